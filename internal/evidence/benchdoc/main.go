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
}

func main() {
	in := flag.String("in", "-", "benchmark output to read (- for stdin)")
	out := flag.String("out", "docs/benchmarks.md", "markdown file to write")
	cmd := flag.String("command", "make bench", "the command that produced the figures, for the document")
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
	pkgs, cpu, err := parse(r)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchdoc:", err)
		os.Exit(1)
	}
	var b strings.Builder
	write(&b, pkgs, cpu, *cmd)
	if err := os.WriteFile(*out, []byte(b.String()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "benchdoc:", err)
		os.Exit(1)
	}
}

// parse reads benchmark output; "pkg:" lines say which package follows.
func parse(r io.Reader) ([]*pkg, string, error) {
	var pkgs []*pkg
	var cur *pkg
	cpu := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "pkg: "):
			path := strings.TrimPrefix(line, "pkg: ")
			cur = nil
			for _, p := range pkgs {
				if p.path == path {
					cur = p
				}
			}
			if cur == nil {
				cur = &pkg{path: path, byName: map[string]*result{}}
				pkgs = append(pkgs, cur)
			}
		case strings.HasPrefix(line, "cpu: "):
			cpu = strings.TrimPrefix(line, "cpu: ")
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
					return nil, "", fmt.Errorf("%q: value %q: %w", line, f[i], err)
				}
				unit := f[i+1]
				if _, ok := res.metrics[unit]; !ok {
					res.units = append(res.units, unit)
				}
				res.metrics[unit] = append(res.metrics[unit], v)
			}
		}
	}
	return pkgs, cpu, sc.Err()
}

func write(b *strings.Builder, pkgs []*pkg, cpu, command string) {
	fmt.Fprintf(b, "# Benchmarks\n\n")
	fmt.Fprintf(b, "Written by `%s` on %s from one run; every figure below comes from that run. Each cell is the\n", command, time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(b, "median over the benchmark's runs, with the lowest and highest run in brackets when it ran more than once.\n")
	fmt.Fprintf(b, "Comparisons with other tools start a new process for every call, as a person or a script does.\n\n")
	fmt.Fprintf(b, "## Machine\n\n")
	fmt.Fprintf(b, "| | |\n|---|---|\n")
	fmt.Fprintf(b, "| CPU | %s, %d logical CPUs |\n", orUnknown(cpu), runtime.NumCPU())
	fmt.Fprintf(b, "| Kernel | %s |\n", firstLine("uname", "-sr"))
	fmt.Fprintf(b, "| Go | %s |\n", runtime.Version())
	for _, t := range [][]string{
		{"ykman", "--version"},
		{"yubico-piv-tool", "--version"},
		{"pcscd", "--version"},
		{"dpkg-query", "-W", "-f", "${Version}", "libfido2-1"},
		{"psql", "--version"},
	} {
		name := t[0]
		if name == "dpkg-query" {
			name = "libfido2"
		}
		fmt.Fprintf(b, "| %s | %s |\n", name, firstLine(t[0], t[1:]...))
	}
	for _, p := range pkgs {
		if len(p.results) == 0 {
			continue
		}
		short := strings.TrimPrefix(p.path, "github.com/keydesk/keydesk/")
		fmt.Fprintf(b, "\n## %s\n", short)
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

// notes say what a benchmark measures and the target it is held to, by
// package and benchmark name prefix.
var notes = []struct{ pkg, prefix, text string }{
	{"internal/evidence", "BenchmarkTools", "keydesk's command beside the tool that answers the same question on the same virtual key, each a new process. `times-faster` is the other tool's median over keydesk's. Target: at least 5× faster than ykman."},
	{"device/pivkey", "BenchmarkOverhead", "A PIV operation through keydesk beside a replay of the same APDUs over a bare PC/SC connection. Target: overhead under 5 %."},
	{"device/fidokey", "BenchmarkOverhead", "A FIDO2 operation through keydesk beside the same libfido2 calls through go-libfido2. Target: overhead under 5 %."},
	{"device/fidokey", "BenchmarkGuard", "What blocking signals around one libfido2 call costs."},
	{"device/discover", "BenchmarkHotplug", "From a key's insertion or removal to the changed list on the Watch channel. Target: under 0.5 s."},
}

func note(pkg, name string) string {
	for _, n := range notes {
		if n.pkg == pkg && strings.HasPrefix(name, n.prefix) {
			return n.text
		}
	}
	return ""
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
