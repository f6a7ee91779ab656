// Package static serves endpoint sets listed in the configuration file. Sets never change
// while a config is live; a reload builds a new Source, and the upstream manager diffs the
// sets so unchanged hosts keep their connections and statistics.
package static
