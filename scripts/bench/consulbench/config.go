package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"
)

// placeholderRE finds a placeholder left unfilled; comment lines may mention placeholders.
var placeholderRE = regexp.MustCompile(`@[A-Z_]+@`)

func writeConfig(o configOptions) error {
	tmpl, err := os.ReadFile(o.template)
	if err != nil {
		return fmt.Errorf("read template: %w", err)
	}
	out, err := renderConfig(string(tmpl), o.services, o.values)
	if err != nil {
		return fmt.Errorf("%s: %w", o.template, err)
	}
	if err := os.WriteFile(o.out, []byte(out), 0o600); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// renderConfig replaces the line "@ROUTES@" with one host route per service and every @KEY@
// from values, and fails on a placeholder left over. Comment lines are kept verbatim: they may
// mention placeholders.
func renderConfig(tmpl string, services int, values map[string]string) (string, error) {
	var out strings.Builder
	haveRoutes := false
	for line := range strings.Lines(tmpl) {
		switch strings.TrimSpace(line) {
		case "@ROUTES@":
			haveRoutes = true
			for i := range services {
				name := serviceName(i, services)
				fmt.Fprintf(&out, "  - name: %s\n    match: { hosts: [ %s ] }\n    to: [ { service: %s } ]\n",
					name, serviceHost(name), name)
			}
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			out.WriteString(line)
			continue
		}
		for k, v := range values {
			line = strings.ReplaceAll(line, "@"+k+"@", v)
		}
		if m := placeholderRE.FindString(line); m != "" {
			return "", fmt.Errorf("unfilled placeholder %s", m)
		}
		out.WriteString(line)
	}
	if !haveRoutes {
		return "", fmt.Errorf("template has no @ROUTES@ line")
	}
	return out.String(), nil
}
