package conf

import "testing"

func TestAdminAllowedHosts(t *testing.T) {
	t.Parallel()
	base := `listeners: [ { address: 127.0.0.1:8080 } ]
admin:
  address: 0.0.0.0:9901
  allowed_hosts:
`
	c := mustParse(t, base+"    - admin.internal\n    - 10.0.0.5\n    - \"fd00::5\"\n")
	if got := c.Admin.AllowedHosts; len(got) != 3 || got[0] != "admin.internal" {
		t.Fatalf("allowed_hosts = %q", got)
	}
	checkErrors(t, base+`    - admin.internal:9901
    - "*.example.com"
    - http://admin.internal
    - ""
`, []wantErr{
		{5, "admin.allowed_hosts[0]", "not a host name or IP address"},
		{6, "admin.allowed_hosts[1]", "not a host name or IP address"},
		{7, "admin.allowed_hosts[2]", "not a host name or IP address"},
		{8, "admin.allowed_hosts[3]", "not a host name or IP address"},
	})
}
