// Package browsertest starts headless Chromium for tests that check a page as a person sees it:
// the DOM after the page's own scripts ran, and what the browser reported on its console
// (script errors, Content-Security-Policy violations).
//
// The browser is Debian's chromium package. scripts/test.sh installs it when missing, so with
// CI set a missing browser fails the test; elsewhere the test skips and says what to install.
package browsertest
