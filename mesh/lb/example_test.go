package lb_test

import (
	"fmt"

	"github.com/meshgate/meshgate/mesh/lb"
)

// A ring_hash cluster keyed on a session cookie: every meshgate instance sends the same
// session to the same host, and a retry moves it to the host that would own it next.
func Example() {
	policy, err := lb.New(lb.Options{Policy: lb.RingHashName})
	if err != nil {
		fmt.Println(err)
		return
	}
	hosts := []*lb.Host{
		{Address: "10.0.0.1:8080", Weight: 1},
		{Address: "10.0.0.2:8080", Weight: 1},
		{Address: "10.0.0.3:8080", Weight: 2},
	}
	picker := policy.NewPicker(hosts)

	key := lb.HashString("session-7f3a")
	first := picker.Pick(key, -1)
	retry := picker.Pick(key, first)
	fmt.Println(hosts[first].Address, hosts[retry].Address)

	_, err = lb.New(lb.Options{Policy: "fastest"})
	fmt.Println(err)
	// Output:
	// 10.0.0.2:8080 10.0.0.1:8080
	// lb: unknown load balancing policy "fastest" (want one of round_robin, random, least_request, p2c_ewma, ring_hash)
}
