// Package evidence holds the benchmarks that set keydesk beside the tools
// people use today (ykman, yubico-piv-tool, libfido2's fido2-token), on the
// same virtual keys through the same real stacks, and the program that
// writes their figures into docs/benchmarks.md.
package evidence

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/sim"
)

// rig is one practice key behind a private pcscd, and a keydesk binary
// built from this tree.
type rig struct {
	fleet   *sim.Fleet
	dir     string
	stop    func() error
	keydesk string
	simDir  string
	state   string
	serial  string
	reader  string
	hidPath string
	env     []string
}

var shared *rig

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.stop()
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// start builds keydesk and starts one virtual key; both stay up for the
// whole benchmark binary (libpcsclite reads its socket path once).
func start(b *testing.B) *rig {
	b.Helper()
	if shared != nil {
		return shared
	}
	dir, err := os.MkdirTemp("", "keydesk-evidence-")
	if err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(dir, "keydesk")
	// keydesk answers the status commands itself and starts keydesk-cli,
	// beside it, for the others (info, enrol, login).
	build := exec.Command("go", "build", "-o", dir+string(filepath.Separator),
		"github.com/keydesk/keydesk/cmd/keydesk", "github.com/keydesk/keydesk/cmd/keydesk-cli")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building keydesk: %v\n%s", err, out)
	}
	state := filepath.Join(dir, "state")
	simDir := filepath.Join(state, "keydesk", "sim")
	ctx, cancel := context.WithCancel(context.Background())
	f, err := sim.Start(ctx, simDir, 1, virtual.Version{Major: 5, Minor: 7, Patch: 2})
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	os.Setenv("PCSCLITE_CSOCK_NAME", f.Daemon.Socket())
	wctx, done := context.WithTimeout(ctx, 20*time.Second)
	defer done()
	if err := f.Daemon.WaitCard(wctx, 0, true); err != nil {
		b.Fatal(err)
	}
	r := &rig{
		fleet: f, dir: dir, stop: func() error { cancel(); return f.Stop() },
		keydesk: bin, simDir: simDir, state: state,
		reader: f.Daemon.Reader(0),
		env: append(os.Environ(), f.Daemon.Env(), "XDG_STATE_HOME="+state, "KEYDESK_PRACTICE=1",
			"XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "XDG_DATA_HOME="+filepath.Join(dir, "data")),
	}
	r.setKey(f.Keys[0].Serial())
	shared = r
	return r
}

// setKey points the rig at the key with this serial (after a
// replacement).
func (r *rig) setKey(serial uint32) {
	r.serial = strconv.FormatUint(uint64(serial), 10)
	r.hidPath = filepath.Join(r.simDir, "hid", "key-"+r.serial)
}

// run starts argv as a new process, as a person or script would, and
// returns how long it took from start to exit.
func (r *rig) run(b *testing.B, argv ...string) time.Duration {
	return r.runIn(b, "", argv...)
}

// runIn is run with stdin (answers and PINs, never on the command line).
func (r *rig) runIn(b *testing.B, stdin string, argv ...string) time.Duration {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = r.env
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	if err != nil {
		b.Fatalf("%v: %v\n%s", argv, err, out.Bytes())
	}
	return d
}

// compare runs keydesk's command and the other tool's alternately, b.N
// times each, and reports both medians and how many times faster keydesk
// is (the other tool's median over keydesk's).
func compare(b *testing.B, tool string, keydesk, other []string) {
	r := start(b)
	r.run(b, keydesk...) // warm the page cache for both
	r.run(b, other...)
	tk := make([]time.Duration, 0, b.N)
	to := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tk = append(tk, r.run(b, keydesk...))
		to = append(to, r.run(b, other...))
	}
	report(b, tool, tk, to)
}

// alone runs one keydesk command b.N times and reports its median and
// 10th and 90th percentiles.
func alone(b *testing.B, keydesk []string) {
	r := start(b)
	r.run(b, keydesk...)
	tk := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tk = append(tk, r.run(b, keydesk...))
	}
	b.ReportMetric(float64(median(tk).Microseconds()), "keydesk-median-µs")
	b.ReportMetric(float64(pct(tk, 10).Microseconds()), "keydesk-p10-µs")
	b.ReportMetric(float64(pct(tk, 90).Microseconds()), "keydesk-p90-µs")
}

// report gives both sides' medians and 10th and 90th percentiles, and how
// many times faster keydesk is: the other side's median over keydesk's.
func report(b *testing.B, tool string, tk, to []time.Duration) {
	for _, side := range []struct {
		name string
		d    []time.Duration
	}{{"keydesk", tk}, {tool, to}} {
		b.ReportMetric(float64(median(side.d).Microseconds()), side.name+"-median-µs")
		b.ReportMetric(float64(pct(side.d, 10).Microseconds()), side.name+"-p10-µs")
		b.ReportMetric(float64(pct(side.d, 90).Microseconds()), side.name+"-p90-µs")
	}
	b.ReportMetric(float64(median(to))/float64(median(tk)), "times-faster")
}

// BenchmarkTools sets each keydesk command beside the tool that answers
// the same question on the same key, process start included.
func BenchmarkTools(b *testing.B) {
	r := start(b)
	kd := func(args ...string) []string { return append([]string{r.keydesk}, args...) }
	b.Run("version", func(b *testing.B) {
		alone(b, kd("version"))
	})
	b.Run("info/ykman", func(b *testing.B) {
		compare(b, "ykman", kd("info", "--json", "--serial", r.serial), []string{"ykman", "-r", r.reader, "info"})
	})
	b.Run("piv-status/ykman", func(b *testing.B) {
		compare(b, "ykman", kd("piv", "status", "--serial", r.serial), []string{"ykman", "-r", r.reader, "piv", "info"})
	})
	b.Run("piv-status/yubico-piv-tool", func(b *testing.B) {
		compare(b, "yubico-piv-tool", kd("piv", "status", "--serial", r.serial), []string{"yubico-piv-tool", "-r", r.reader, "-a", "status"})
	})
	b.Run("fido-status/fido2-token", func(b *testing.B) {
		compare(b, "fido2-token", kd("fido", "status", "--serial", r.serial), []string{"fido2-token", "-I", r.hidPath})
	})
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// pct is the p-th percentile (nearest rank below).
func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}
