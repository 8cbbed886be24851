package main

import (
	"strings"
	"testing"
)

const sample = `goos: linux
pkg: github.com/keydesk/keydesk/device/pivkey
cpu: AMD EPYC
BenchmarkOverhead/Status-2   200   8807545 ns/op   4.055 overhead-%   3143565 pivkey-median-ns
BenchmarkOverhead/Status-2   200   8434518 ns/op  -0.1851 overhead-%   3874164 pivkey-median-ns
BenchmarkOverhead/Status-2   200   8893045 ns/op   5.054 overhead-%   4029837 pivkey-median-ns
BenchmarkOverhead/Sign
    bench_test.go:66: a log line
PASS
pkg: github.com/keydesk/keydesk/device/discover
BenchmarkHotplug/remove-2   5   395800000 ns/op
`

func TestParseAndWrite(t *testing.T) {
	pkgs, cpu, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if cpu != "AMD EPYC" || len(pkgs) != 2 {
		t.Fatalf("cpu %q, %d packages", cpu, len(pkgs))
	}
	st := pkgs[0].byName["BenchmarkOverhead/Status"]
	if st == nil || len(st.metrics["overhead-%"]) != 3 || pkgs[0].byName["BenchmarkOverhead/Sign"] != nil {
		t.Fatalf("parsed %+v", pkgs[0].results)
	}
	var b strings.Builder
	write(&b, pkgs, cpu, "make bench")
	doc := b.String()
	for _, want := range []string{
		"## device/pivkey",
		"| overhead-% | 4.05 (-0.185 – 5.05, 3 runs) |",
		"| pivkey-median-ns | 3874164 (3143565 – 4029837, 3 runs) |",
		"## device/discover",
		"| ns/op | 395800000 |",
		"Target: overhead under 5 %.",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("document lacks %q:\n%s", want, doc)
		}
	}
}
