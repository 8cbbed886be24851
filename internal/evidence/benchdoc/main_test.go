package main

import (
	"strings"
	"testing"
)

const sample = `# sizes: KEYDESK_BENCH_USERS=10000
goos: linux
pkg: github.com/keydesk/keydesk/device/pivkey
cpu: AMD EPYC
BenchmarkOverhead/Status-2   200   8807545 ns/op   4.055 overhead-%   3143565 pivkey-median-ns
BenchmarkOverhead/Status-2   200   8434518 ns/op  -0.1851 overhead-%   3874164 pivkey-median-ns
BenchmarkOverhead/Status-2   200   8893045 ns/op   5.054 overhead-%   4029837 pivkey-median-ns
BenchmarkOverhead/Sign
    bench_test.go:66: a log line
PASS
ok  	github.com/keydesk/keydesk/device/pivkey	12.5s
benchdoc: load ./device/pivkey 0.31 1.20
pkg: github.com/keydesk/keydesk/device/discover
BenchmarkHotplug/remove-2   5   395800000 ns/op
pkg: github.com/keydesk/keydesk/internal/evidence
BenchmarkTools/info/ykman-2   20   1 ns/op   9000 keydesk-median-µs   8000 keydesk-p10-µs   12000 keydesk-p90-µs   300000 ykman-median-µs   250000 ykman-p10-µs   400000 ykman-p90-µs   33.3 times-faster
BenchmarkTools/fido-status/fido2-token-2   20   1 ns/op   9000 keydesk-median-µs   8000 keydesk-p10-µs   12000 keydesk-p90-µs   9000 fido2-token-median-µs   8000 fido2-token-p10-µs   9500 fido2-token-p90-µs   1 times-faster
BenchmarkTools/piv-status/ykman-2   20   1 ns/op   90000 keydesk-median-µs   80000 keydesk-p10-µs   120000 keydesk-p90-µs   300000 ykman-median-µs   250000 ykman-p10-µs   400000 ykman-p90-µs   3.33 times-faster
benchdoc: failed ./registry/server .
benchdoc: unavailable github.com/keydesk/keydesk/cmd/keydesk BenchmarkStart
`

func TestParseAndWrite(t *testing.T) {
	rn, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if rn.cpu != "AMD EPYC" || len(rn.pkgs) != 4 || rn.sizes != "KEYDESK_BENCH_USERS=10000" || len(rn.pkgs[0].took) != 1 || rn.pkgs[0].took[0] != "12.5s" {
		t.Fatalf("cpu %q, %d packages, sizes %q, took %q", rn.cpu, len(rn.pkgs), rn.sizes, rn.pkgs[0].took)
	}
	st := rn.pkgs[0].byName["BenchmarkOverhead/Status"]
	if st == nil || len(st.metrics["overhead-%"]) != 3 || rn.pkgs[0].byName["BenchmarkOverhead/Sign"] != nil {
		t.Fatalf("parsed %+v", rn.pkgs[0].results)
	}
	var b strings.Builder
	h := host{cpu: "Test CPU", cpus: 2, ram: "1.0 GiB", kernel: "Linux", versions: [][2]string{{"ykman", "YubiKey Manager (ykman) version: 4.0.9"}}}
	write(&b, rn, when{started: "2026-12-05T23:00:00Z", finished: "2026-12-05T23:09:30Z", loadStart: "1.00 2.00 3.00", loadEnd: "4.00 5.00 6.00"}, h, "make bench")
	doc := b.String()
	for _, want := range []string{
		"from one run (2026-12-05T23:00:00Z to 2026-12-05T23:09:30Z, 9m30s)",
		"**1.00 2.00 3.00** at the start, **4.00 5.00 6.00** at the end",
		"| CPU | Test CPU |",
		"| RAM | 1.0 GiB |",
		"| ykman | YubiKey Manager (ykman) version: 4.0.9 |",
		"## device/pivkey",
		"`go test` took 12.5s for this package, building and setting up included. Load average (1 min) before and after: 0.31 → 1.20.",
		"| overhead-% | 4.05 (-0.185 – 5.05, 3 runs) |",
		"| pivkey-median-ns | 3874164 (3143565 – 4029837, 3 runs) |",
		"## device/discover",
		"| ns/op | 395800000 |",
		"Target: overhead under 5 %.",
		"| Tools/info/ykman | 9 (8–12) | 300 (250–400) (ykman) | 33.3× | ≥ 5×: met |",
		"| Tools/fido-status/fido2-token | 9 (8–12) | 9 (8–9.5) (fido2-token) | 1× | ≥ 0.667×: met |",
		"| Tools/piv-status/ykman | 90 (80–120) | 300 (250–400) (ykman) | 3.33× | ≥ 5×: **not met** |",
		"- `./registry/server .`",
		"## cmd/keydesk",
		"Not available: this tree has no `BenchmarkStart` in cmd/keydesk.",
		"Registry sizes in this run: `KEYDESK_BENCH_USERS=10000`",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("document lacks %q:\n%s", want, doc)
		}
	}
}
