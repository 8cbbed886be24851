package ui

import (
	"context"
	"encoding/json"
	"os"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

// The memory dump is a measurement hook, inert unless KEYDESK_MEM_DUMP
// names a file: then, each time a file of that name with ".want" appended
// appears, the Go runtime's memory figures (runtime/metrics: the
// /memory/classes/… breakdown of what the runtime holds, the heap goal,
// the collections and allocations so far, the goroutines) are written to
// the file as a JSON object of name to value, and the ".want" file is
// removed. The round benchmark (cmd/keydesk, KEYDESK_ROUND_IDLE_TRACE)
// reads it beside /proc/PID/smaps to tell the Go heap's share of the
// resident memory from the C heap's and the mapped files'. Words in the
// request ask for more, first: "cpu=N" a CPU profile of the next N
// seconds (the file's name with ".cpu" appended), "allocs" the allocation
// profile so far (".allocs"; `go tool pprof -base` of two tells what was
// allocated between them). It looks for a request every 250 ms; nothing
// is read while nobody asks.

// memSamples are the runtime/metrics the memory dump writes.
func memSamples() []metrics.Sample {
	var s []metrics.Sample
	for _, d := range metrics.All() {
		if d.Kind != metrics.KindUint64 {
			continue
		}
		if strings.HasPrefix(d.Name, "/memory/classes/") || d.Name == "/gc/heap/goal:bytes" ||
			d.Name == "/gc/cycles/total:gc-cycles" || d.Name == "/sched/goroutines:goroutines" ||
			d.Name == "/gc/heap/allocs:bytes" || d.Name == "/gc/heap/allocs:objects" {
			s = append(s, metrics.Sample{Name: d.Name})
		}
	}
	return s
}

// dumpMemory answers requests for the runtime's memory figures at path
// (see above) until ctx ends.
func dumpMemory(ctx context.Context, path string) {
	want := path + ".want"
	samples := memSamples()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		req, err := os.ReadFile(want)
		if err != nil {
			continue
		}
		allocs := false
		for _, w := range strings.Fields(string(req)) {
			if w == "allocs" {
				allocs = true
			}
			if v, ok := strings.CutPrefix(w, "cpu="); ok {
				if secs, err := strconv.Atoi(v); err == nil && secs > 0 {
					// A CPU profile of the next secs seconds.
					if f, err := os.Create(path + ".cpu"); err == nil {
						if pprof.StartCPUProfile(f) == nil {
							time.Sleep(time.Duration(secs) * time.Second)
							pprof.StopCPUProfile()
						}
						f.Close()
					}
				}
			}
		}
		metrics.Read(samples)
		out := make(map[string]uint64, len(samples))
		for _, s := range samples {
			if s.Value.Kind() == metrics.KindUint64 {
				out[s.Name] = s.Value.Uint64()
			}
		}
		b, _ := json.Marshal(out)
		if allocs {
			if f, err := os.Create(path + ".allocs"); err == nil {
				pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}
		if os.WriteFile(path+".tmp", b, 0o600) == nil {
			os.Rename(path+".tmp", path)
		}
		os.Remove(want)
	}
}
