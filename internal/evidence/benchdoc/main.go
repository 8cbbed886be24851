// Command benchdoc turns the output of `go test -bench` runs (the standard
// benchmark format, "BenchmarkName-P  N  value unit  value unit ...") into
// docs/benchmarks.md: one table per package, each benchmark's metrics as the
// median over its runs with the range beside it, and the machine and tool
// versions the figures came from. `make bench` runs it on the output of the
// benchmarks it ran, so every figure in the file comes from the same run.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// result is one benchmark's runs: unit → the values reported, in order.
type result struct {
	name    string
	units   []string
	metrics map[string][]float64
}

type pkg struct {
	path    string
	results []*result
	byName  map[string]*result
	took    []string // go test's wall time for each run of the package ("123.4s")
	load    []string // the 1-minute load average before and after each run ("0.31 → 1.20")
}

// run is everything read from one `make bench` output.
type run struct {
	pkgs        []*pkg
	cpu         string
	sizes       string
	failed      []string // "PACKAGE PATTERN" of benchmarks that failed
	unavailable []string // "PACKAGE Benchmark" the tree does not have
}

// when is the run's wall-clock span and load, from packaging/bench.sh.
type when struct {
	started, finished  string // RFC 3339
	loadStart, loadEnd string // the three load averages
}

func main() {
	in := flag.String("in", "-", "benchmark output to read (- for stdin)")
	out := flag.String("out", "docs/benchmarks.md", "markdown file to write")
	cmd := flag.String("command", "make bench", "the command that produced the figures, for the document")
	var w when
	flag.StringVar(&w.started, "started", "", "when the run started (RFC 3339)")
	flag.StringVar(&w.finished, "finished", "", "when the run finished (RFC 3339)")
	flag.StringVar(&w.loadStart, "load-start", "", "load averages (1, 5, 15 min) at the start")
	flag.StringVar(&w.loadEnd, "load-end", "", "load averages at the end")
	flag.Parse()
	var r io.Reader = os.Stdin
	if *in != "-" {
		f, err := os.Open(*in)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchdoc:", err)
			os.Exit(1)
		}
		defer f.Close()
		r = f
	}
	rn, err := parse(r)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchdoc:", err)
		os.Exit(1)
	}
	var b strings.Builder
	write(&b, rn, w, machine(), *cmd)
	if err := os.WriteFile(*out, []byte(b.String()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "benchdoc:", err)
		os.Exit(1)
	}
}

// parse reads benchmark output; "pkg:" lines say which package follows,
// "benchdoc:" lines come from packaging/bench.sh.
func parse(r io.Reader) (*run, error) {
	rn := &run{}
	var cur *pkg
	find := func(path string) *pkg {
		for _, p := range rn.pkgs {
			if p.path == path {
				return p
			}
		}
		p := &pkg{path: path, byName: map[string]*result{}}
		rn.pkgs = append(rn.pkgs, p)
		return p
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "pkg: "):
			cur = find(strings.TrimPrefix(line, "pkg: "))
		case strings.HasPrefix(line, "cpu: "):
			rn.cpu = strings.TrimPrefix(line, "cpu: ")
		case strings.HasPrefix(line, "# sizes: "):
			rn.sizes = strings.TrimPrefix(line, "# sizes: ")
		case strings.HasPrefix(line, "benchdoc: failed "):
			rn.failed = append(rn.failed, strings.TrimPrefix(line, "benchdoc: failed "))
		case strings.HasPrefix(line, "benchdoc: unavailable "):
			rest := strings.TrimPrefix(line, "benchdoc: unavailable ")
			rn.unavailable = append(rn.unavailable, rest)
			if path, _, ok := strings.Cut(rest, " "); ok {
				find(path)
			}
		case strings.HasPrefix(line, "benchdoc: load "):
			// "benchdoc: load ./device/pivkey 0.31 1.20": the package as
			// bench.sh named it, relative to the module.
			f := strings.Fields(strings.TrimPrefix(line, "benchdoc: load "))
			if len(f) != 3 {
				continue
			}
			for _, p := range rn.pkgs {
				if strings.HasSuffix(p.path, strings.TrimPrefix(f[0], ".")) {
					p.load = append(p.load, f[1]+" → "+f[2])
					break
				}
			}
		case strings.HasPrefix(line, "ok  \t"):
			if f := strings.Split(line, "\t"); len(f) >= 3 {
				p := find(f[1])
				p.took = append(p.took, strings.TrimSpace(f[2]))
			}
		case strings.HasPrefix(line, "Benchmark") && cur != nil:
			f := strings.Fields(line)
			if len(f) < 4 || len(f)%2 != 0 {
				continue // a name alone: the benchmark's own log line
			}
			if _, err := strconv.Atoi(f[1]); err != nil {
				continue
			}
			name := f[0]
			if i := strings.LastIndex(name, "-"); i > 0 {
				if _, err := strconv.Atoi(name[i+1:]); err == nil {
					name = name[:i]
				}
			}
			res := cur.byName[name]
			if res == nil {
				res = &result{name: name, metrics: map[string][]float64{}}
				cur.byName[name] = res
				cur.results = append(cur.results, res)
			}
			for i := 2; i+1 < len(f); i += 2 {
				v, err := strconv.ParseFloat(f[i], 64)
				if err != nil {
					return nil, fmt.Errorf("%q: value %q: %w", line, f[i], err)
				}
				unit := f[i+1]
				if _, ok := res.metrics[unit]; !ok {
					res.units = append(res.units, unit)
				}
				res.metrics[unit] = append(res.metrics[unit], v)
			}
		}
	}
	return rn, sc.Err()
}

// host is the machine and the versions of everything the figures depend on.
type host struct {
	cpu      string // model name from /proc/cpuinfo
	cpus     int
	ram      string
	kernel   string
	versions [][2]string
}

func machine() host {
	h := host{cpus: runtime.NumCPU(), kernel: firstLine("uname", "-sr")}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				h.cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				if kb, err := strconv.ParseFloat(f[1], 64); err == nil {
					h.ram = fmt.Sprintf("%.1f GiB", kb/(1<<20))
				}
			}
		}
	}
	h.versions = [][2]string{
		{"Go", runtime.Version()},
		{"ykman", firstLine("ykman", "--version")},
		{"yubico-piv-tool", firstLine("yubico-piv-tool", "--version")},
		{"fido2-token (libfido2's tools)", firstLine("fido2-token", "-V")},
		{"libfido2", firstLine("dpkg-query", "-W", "-f", "${Version}", "libfido2-1")},
		{"pcsc-lite (pcscd)", firstLine("pcscd", "--version")},
		{"PostgreSQL", firstLine("psql", "--version")},
	}
	return h
}

func write(b *strings.Builder, rn *run, w when, h host, command string) {
	fmt.Fprintf(b, "# Benchmarks\n\n")
	date := w.started
	if date == "" {
		date = time.Now().UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(b, "Written by `%s` from one run (%s", command, date)
	if w.finished != "" {
		fmt.Fprintf(b, " to %s", w.finished)
		if t0, err := time.Parse(time.RFC3339, w.started); err == nil {
			if t1, err := time.Parse(time.RFC3339, w.finished); err == nil {
				fmt.Fprintf(b, ", %s", t1.Sub(t0).Round(time.Second))
			}
		}
	}
	fmt.Fprintf(b, "); every figure below comes from that run, the raw output is [benchmarks.txt](benchmarks.txt).\n")
	fmt.Fprintf(b, "Each cell is the median over the benchmark's runs, with the lowest and highest run in brackets when it ran\n")
	fmt.Fprintf(b, "more than once. Comparisons with other tools start a new process for every call, as a person or a script\n")
	fmt.Fprintf(b, "does, and report each side's median and 10th and 90th percentiles (`-p10-µs`, `-p90-µs`) over the calls.\n")
	if w.loadStart != "" {
		fmt.Fprintf(b, "\nLoad average (1, 5, 15 min): **%s** at the start, **%s** at the end. The machine may be shared; figures\n", w.loadStart, orUnknown(w.loadEnd))
		fmt.Fprintf(b, "taken under load are slower and spread wider than on a quiet machine, for keydesk and the other tools alike.\n")
	}
	if rn.sizes != "" {
		fmt.Fprintf(b, "\nRegistry sizes in this run: `%s` (reduced to keep `make bench` under 10 minutes; `make bench-registry` runs them at full size).\n", rn.sizes)
	}
	fmt.Fprintf(b, "\n## Machine and versions\n\n")
	fmt.Fprintf(b, "| | |\n|---|---|\n")
	cpu := h.cpu
	if cpu == "" {
		cpu = rn.cpu
	}
	fmt.Fprintf(b, "| CPU | %s |\n", orUnknown(cpu))
	fmt.Fprintf(b, "| Cores | %d logical CPUs |\n", h.cpus)
	fmt.Fprintf(b, "| RAM | %s |\n", orUnknown(h.ram))
	fmt.Fprintf(b, "| Kernel | %s |\n", orUnknown(h.kernel))
	for _, v := range h.versions {
		fmt.Fprintf(b, "| %s | %s |\n", v[0], v[1])
	}
	summary(b, rn)
	if len(rn.failed) > 0 {
		fmt.Fprintf(b, "\n## Failed\n\nThese benchmarks failed in this run; their figures are missing or partial (see benchmarks.txt):\n\n")
		for _, f := range rn.failed {
			fmt.Fprintf(b, "- `%s`\n", f)
		}
	}
	for _, p := range rn.pkgs {
		short := strings.TrimPrefix(p.path, "github.com/keydesk/keydesk/")
		var missing []string
		for _, u := range rn.unavailable {
			if path, name, ok := strings.Cut(u, " "); ok && path == p.path {
				missing = append(missing, name)
			}
		}
		if len(p.results) == 0 && len(missing) == 0 {
			continue
		}
		fmt.Fprintf(b, "\n## %s\n", short)
		if len(p.took) > 0 {
			fmt.Fprintf(b, "\n`go test` took %s for this package, building and setting up included.", strings.Join(p.took, " + "))
			if len(p.load) > 0 {
				fmt.Fprintf(b, " Load average (1 min) before and after: %s.", strings.Join(p.load, ", "))
			}
			fmt.Fprintln(b)
		}
		for _, name := range missing {
			fmt.Fprintf(b, "\n**%s**\n\n", strings.TrimPrefix(name, "Benchmark"))
			if n := note(short, name); n != "" {
				fmt.Fprintf(b, "%s\n\n", n)
			}
			fmt.Fprintf(b, "Not available: this tree has no `%s` in %s.\n", name, short)
		}
		for _, r := range p.results {
			fmt.Fprintf(b, "\n**%s**\n\n", strings.TrimPrefix(r.name, "Benchmark"))
			if n := note(short, r.name); n != "" {
				fmt.Fprintf(b, "%s\n\n", n)
			}
			fmt.Fprintf(b, "| metric | value |\n|---|---|\n")
			for _, u := range r.units {
				fmt.Fprintf(b, "| %s | %s |\n", u, cell(r.metrics[u]))
			}
		}
	}
}

// summary is the table of comparisons: every result that reports
// times-faster, with both medians and the 5× target against ykman.
func summary(b *strings.Builder, rn *run) {
	var rows []string
	for _, p := range rn.pkgs {
		for _, r := range p.results {
			tf, ok := r.metrics["times-faster"]
			if !ok {
				continue
			}
			other := ""
			for _, u := range r.units {
				if strings.HasSuffix(u, "-median-µs") && !strings.HasPrefix(u, "keydesk-") {
					other = strings.TrimSuffix(u, "-median-µs")
				}
			}
			ratio := med(tf)
			target := "–"
			if need, ok := timesFasterTarget(r.name); ok {
				target = "≥ " + num(need) + "×: met"
				if ratio < need {
					target = "≥ " + num(need) + "×: **not met**"
				}
			}
			rows = append(rows, fmt.Sprintf("| %s | %s | %s (%s) | %s | %s |", strings.TrimPrefix(r.name, "Benchmark"),
				ms(r.metrics, "keydesk"), ms(r.metrics, other), other, num(ratio)+"×", target))
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(b, "\n## keydesk beside the tools admins use today\n\n")
	fmt.Fprintf(b, "Same virtual key, same pcscd and libfido2, one new process per call; medians in milliseconds with the\n")
	fmt.Fprintf(b, "10th–90th percentile in brackets. Times faster = the other side's median over keydesk's, from the same run.\n")
	fmt.Fprintf(b, "Targets: keydesk at least 5× faster than ykman, no slower than yubico-piv-tool (≥ 1×), and no slower than 1.5×\n")
	fmt.Fprintf(b, "fido2-token (≥ 0.667×); `keydesk version` alone (Tools/version) at most 2 ms.\n\n")
	fmt.Fprintf(b, "| comparison | keydesk ms | other ms | times faster | target |\n|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintln(b, r)
	}
}

// timesFasterTarget is the least times-faster a comparison is held to
// (docs/cli.md): at least 5× ykman, no slower than yubico-piv-tool, and
// no slower than 1.5× fido2-token.
func timesFasterTarget(name string) (float64, bool) {
	switch {
	case strings.HasSuffix(name, "/ykman"):
		return 5, true
	case strings.HasSuffix(name, "/yubico-piv-tool"):
		return 1, true
	case strings.HasSuffix(name, "/fido2-token"):
		return 1 / 1.5, true
	}
	return 0, false
}

func ms(m map[string][]float64, side string) string {
	v, ok := m[side+"-median-µs"]
	if !ok {
		return "?"
	}
	s := num(med(v) / 1000)
	lo, lok := m[side+"-p10-µs"]
	hi, hok := m[side+"-p90-µs"]
	if lok && hok {
		s += fmt.Sprintf(" (%s–%s)", num(med(lo)/1000), num(med(hi)/1000))
	}
	return s
}

func med(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func cell(v []float64) string {
	s := slices.Clone(v)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s) == 1 {
		return num(med)
	}
	return fmt.Sprintf("%s (%s – %s, %d runs)", num(med), num(s[0]), num(s[len(s)-1]), len(s))
}

func num(f float64) string {
	switch {
	case f == float64(int64(f)) && f < 1e15:
		return strconv.FormatInt(int64(f), 10)
	case f >= 100:
		return strconv.FormatFloat(f, 'f', 0, 64)
	default:
		return strconv.FormatFloat(f, 'g', 3, 64)
	}
}

func firstLine(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return "not installed"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// notes say what a benchmark measures and the target it is held to, by
// package and benchmark name prefix; the first match is used.
var notes = []struct{ pkg, prefix, text string }{
	{"internal/evidence", "BenchmarkTools", "keydesk's command beside the tool that answers the same question on the same virtual key, each a new process: " +
		"`keydesk info --json` beside `ykman -r READER info`, `keydesk piv status` beside `ykman -r READER piv info` and `yubico-piv-tool -r READER -a status`, " +
		"`keydesk fido status` beside `fido2-token -I DEVICE`. `times-faster` is the other tool's median over keydesk's. " +
		"Targets: at least 5× faster than ykman, no slower than yubico-piv-tool, no slower than 1.5× fido2-token. " +
		"`Tools/version` is `keydesk version` alone, process start to exit (target: median at most 2 ms). " +
		"The keydesk measured is the program people run: it answers `version`, `piv status` and `fido status` itself and starts keydesk-cli, the whole command line, " +
		"for `info` and every other command (docs/cli.md, \"Start-up\")."},
	{"internal/evidence", "BenchmarkEnrol", "A full enrolment of one factory-fresh key: one `keydesk enrol --user U --serial S --role primary --no-backup --yes` process " +
		"(PINs on stdin) against a `keydesk-registry` process on loopback, beside the same work on the key scripted with 13 processes of ykman and libfido2's tools: " +
		"`ykman piv info` and `fido2-token -I` (is the key fresh), `ykman piv keys generate` (ECCP256 in 9a) and `piv keys attest`, `fido2-token -S` (PIN) and " +
		"`fido2-token -S -l 8` (minimum PIN length), `fido2-cred -M -r -v -c 2` and `fido2-cred -V` (the organisation's credential and its attestation signature), " +
		"`fido2-assert -G -v` and `fido2-assert -V` (the test sign-in), `ykman piv access change-management-key -a AES192 --protect`, `change-puk`, `change-pin`, " +
		"`ykman piv certificates generate` (self-signed 9a). Every secret goes to the tools on stdin and every file is 0600 (none of these tools forces a secret " +
		"onto its command line; libfido2's tools are started with `setsid sh -c` so that they read the PIN from stdin instead of a terminal, which costs the " +
		"tools about a millisecond a step). keydesk does more than the script: it checks both attestation chains against the roots and the key's serial, " +
		"seals the random PUK and management key with age to the helpdesk, registers the key, stores the escrow and signs the registry's FIDO2 and PIV " +
		"challenges until the key is active. Swapping in a fresh key and creating the user are not timed. Target: at least 5× faster than ykman."},
	{"device/pivkey", "BenchmarkOverhead", "A PIV operation through keydesk beside a replay of the same APDUs over a bare PC/SC connection. Target: overhead under 5 %."},
	{"device/fidokey", "BenchmarkOverhead", "A FIDO2 operation through keydesk beside the same libfido2 calls through go-libfido2. Target: overhead under 5 %."},
	{"device/fidokey", "BenchmarkGuard", "What blocking signals around one libfido2 call costs."},
	{"device/discover", "BenchmarkHotplug", "From a key's insertion or removal to the changed list on the Watch channel. Target: under 0.5 s."},
	{"app/enrol", "BenchmarkBatchEnrol", "A roster of b.N users × 2 keys enrolled in one batch on practice keys with automatic touch, against a `keydesk-registry` " +
		"process (SQLite) on loopback, enrolled keys swapped for fresh ones (not timed). `keydesk-ms/key` = batch wall time − device time (every PC/SC and " +
		"FIDO HID call and the virtual key's work) − swaps, per key: registry round trips, attestation checks, escrow sealing and journal writes. " +
		"`ns/op` is per roster user with swaps and device time included. Target: keydesk-ms/key under 300 ms (docs/workflows.md)."},
	{"registry/store/sqlstore", "BenchmarkImport", "KEYDESK_BENCH_USERS users with 3 credentials each imported through the store (change sets of 1,000 users with " +
		"feed rows, audit entries and a signed checkpoint) and as plain SQL, interleaved, on SQLite and PostgreSQL. `ratio` = store-s / raw-s."},
	{"registry/store/sqlstore", "BenchmarkSync", "A full sync of the change feed (pages of 10,000) and an incremental sync of the last 1,000 changes, through the store and as the same SELECT in plain SQL."},
	{"registry/store/sqlstore", "BenchmarkValidity", "The validity view for everyone, through the store (one snapshot with its version) and as the same query in plain SQL."},
	{"registry/store/sqlstore", "BenchmarkReadiness", "The migration readiness report for every user of a plan (KEYDESK_BENCH_MIGRATION_USERS users × 4 credentials). " +
		"Target at full size (250,000 users, 1,000,000 credentials): under 2 s on both databases."},
	{"registry/store/sqlstore", "BenchmarkRollback", "Rolling back a complete migration of every user in one change set. Target at full size (100,000 users): under 1 s."},
	{"registry/server", "BenchmarkVerificationProcess", "The same verifications against keydesk-registry as deployed: the built binary in its own process (`serve`), " +
		"TLS with its self-signed certificate (the clients keep their connections), PostgreSQL. Target: at least 2,000 verifications/s on PostgreSQL (docs/registry.md)."},
	{"registry/server", "BenchmarkVerification", "Full verifications (POST /v1/challenges, a PIV P-256 signature, POST /v1/verifications) over HTTP on loopback with " +
		"32 concurrent clients, one challenge request per verification (`api`) or challenges 32 at a time (`api-batch`), beside the raw database writing the same rows in plain SQL (`raw`); " +
		"the server runs with keydesk-registry's collector target (GOGC=400). Target: at least 2,000 verifications/s on PostgreSQL (docs/registry.md)."},
	{"registry/simulation", "BenchmarkSimulate", "A simulated migration of KEYDESK_SIM_USERS users, 3 % of them with broken keys, a 1 % canary and a 1 % halt threshold."},
	{"cmd/keydesk-rp", "BenchmarkMigrationDrill", "The migration drill (docs/relying-party.md) at KEYDESK_DRILL_USERS users, 3 of them on practice keys through libfido2: " +
		"`signins` attempted, `refused-wrongly` (must be 0), the share of the canary whose sign-ins failed before it halted by itself, the rollback reaching the " +
		"relying party (p99 from the rollback to a cut-over user's old key accepted), the replica's lag p99, `Allowed`'s cost and the sign-ins served with the " +
		"registry killed. The run's full table is docs/drill.md, written by the same run."},
	{"cmd/keydesk", "BenchmarkStart", "The desktop app's start under Xvfb, cold: from the process start to the first window shown, and the resident memory (VmRSS, MiB) at the first frame, after start (3 s later: practice keys, key watcher and embedded registry running, start-up pages handed back) and, on the first start, after visiting every screen. Targets: first frame under 1 s, resident memory after start under 150 MB (docs/desktop-app.md)."},
	{"cmd/keydesk", "BenchmarkRound", "The desktop app under Xvfb at 1280×800 driven through the full practice round with xdotool (TestRound's script: a new user's primary and backup keys enrolled, " +
		"verify, the PIV PIN blocked by wrong PINs from the command line, the helpdesk's unblock with the escrowed PUK, Activity): first frame, resident memory (VmRSS, MiB) " +
		"3 s after the first screen showed both keys, and after the round once idle for 6 s and for 30 s (the app hands memory back once it has grown and stopped growing). Target: under 150 MB after the round (docs/desktop-app.md)."},
	{"app/ui/keysui", "BenchmarkChangeFromElsewhere", "The Keys screen (headless) on two practice keys: from a wrong PIV PIN typed outside the window (through PC/SC, as `keydesk piv change-pin` " +
		"with a mistyped PIN does) to the key's card and PIV section showing one try fewer, with nothing done in the window. Target: under 1 s (docs/desktop-app.md, \"One key-state model\")."},
}

func note(pkg, name string) string {
	for _, n := range notes {
		if n.pkg == pkg && strings.HasPrefix(name, n.prefix) {
			return n.text
		}
	}
	return ""
}
