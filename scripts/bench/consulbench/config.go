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

// renderConfig fills @ROUTES@ with one host route per service and every @KEY@ from values,
// and fails on a placeholder left over outside comments (as bench.sh's render does).
func renderConfig(tmpl string, services int, values map[string]string) (string, error) {
	if !strings.Contains(tmpl, "@ROUTES@") {
		return "", fmt.Errorf("template has no @ROUTES@")
	}
	var routes strings.Builder
	for i := range services {
		name := serviceName(i, services)
		fmt.Fprintf(&routes, "  - name: %s\n    match: { hosts: [ %s ] }\n    to: [ { service: %s } ]\n",
			name, serviceHost(name), name)
	}
	out := strings.ReplaceAll(tmpl, "@ROUTES@\n", routes.String())
	out = strings.ReplaceAll(out, "@ROUTES@", strings.TrimSuffix(routes.String(), "\n"))
	for k, v := range values {
		out = strings.ReplaceAll(out, "@"+k+"@", v)
	}
	for line := range strings.Lines(out) {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if m := placeholderRE.FindString(line); m != "" {
			return "", fmt.Errorf("unfilled placeholder %s", m)
		}
	}
	return out, nil
}
