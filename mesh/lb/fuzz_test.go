package lb

import "testing"

// FuzzPick checks the contract every picker shares, for arbitrary weights, Down sets,
// excludes and hashes: an index in range (or -1 for no hosts); never exclude or a Down host
// while another host is up; exclude when it is the only host up; never exclude in panic mode.
func FuzzPick(f *testing.F) {
	f.Add([]byte{1, 2, 3}, uint16(0), int8(-1), uint64(0))
	f.Add([]byte{1, 1, 1, 1}, uint16(0b1011), int8(2), uint64(42))
	f.Add([]byte{5, 0, 200}, uint16(0b111), int8(1), uint64(1<<63))
	f.Add([]byte{}, uint16(0), int8(0), uint64(7))
	f.Add([]byte{9}, uint16(1), int8(0), uint64(7))
	f.Add([]byte{3, 3}, uint16(0b01), int8(0), uint64(99))
	policies := allPolicies(f)
	// A small ring keeps each execution fast; the contract does not depend on ring size.
	for i := range policies {
		if policies[i].name == RingHashName {
			policies[i].policy = mustRing(f, 3)
		}
	}
	f.Fuzz(func(t *testing.T, weights []byte, downMask uint16, exclude int8, hash uint64) {
		if len(weights) > 16 {
			weights = weights[:16]
		}
		hosts := make([]*Host, len(weights))
		for i, w := range weights {
			hosts[i] = &Host{Address: itoa(i) + ".test:80", Weight: int(w)}
			hosts[i].SetDown(downMask&(1<<i) != 0)
		}
		ex := int(exclude)
		othersUp, excludeUp := false, false
		for i, h := range hosts {
			switch {
			case h.Down():
			case i == ex:
				excludeUp = true
			default:
				othersUp = true
			}
		}
		for _, np := range policies {
			got := np.policy.NewPicker(hosts).Pick(hash, ex)
			switch {
			case len(hosts) == 0:
				if got != -1 {
					t.Fatalf("%s: Pick on no hosts = %d", np.name, got)
				}
				continue
			case got < 0 || got >= len(hosts):
				t.Fatalf("%s: Pick = %d, out of range", np.name, got)
			case len(hosts) == 1:
				continue // the only host is always returned
			case othersUp:
				if got == ex || hosts[got].Down() {
					t.Fatalf("%s: Pick = %d (down=%v, exclude=%d) though other hosts are up",
						np.name, got, hosts[got].Down(), ex)
				}
			case excludeUp:
				if got != ex {
					t.Fatalf("%s: Pick = %d, want the only up host %d", np.name, got, ex)
				}
			default: // panic mode
				if got == ex {
					t.Fatalf("%s: panic mode returned exclude %d", np.name, ex)
				}
			}
		}
	})
}
