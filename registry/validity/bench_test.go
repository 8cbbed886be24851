package validity

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/keydesk/keydesk/registry"
)

// The 1M-credential figures (docs/relying-party.md): 500,000 users with a
// primary and a backup key each, one FIDO2 credential per key.
const (
	benchUsers   = 500_000
	benchPerUser = 2
)

var bench1M struct {
	once sync.Once
	rows []registry.ValidCredential
	path string
	err  error
}

// snapshot1M writes the 1M-credential snapshot once per test binary.
func snapshot1M(b *testing.B) (string, []registry.ValidCredential) {
	bench1M.once.Do(func() {
		bench1M.rows = synthetic(1, benchUsers, benchPerUser)
		v, err := buildView(bench1M.rows, 1)
		if err != nil {
			bench1M.err = err
			return
		}
		dir, err := os.MkdirTemp("", "validity-bench-")
		if err != nil {
			bench1M.err = err
			return
		}
		bench1M.path = filepath.Join(dir, "validity.snap")
		bench1M.err = writeSnapshot(bench1M.path, v, &learned{keyOwner: map[string]string{}, credKey: map[string]string{}}, time.Now().UnixNano())
	})
	if bench1M.err != nil {
		b.Fatal(bench1M.err)
	}
	return bench1M.path, bench1M.rows
}

func replicaFrom(b *testing.B, path string) *Replica {
	v, l, last, err := readSnapshot(path)
	if err != nil {
		b.Fatal(err)
	}
	r := &Replica{opt: Options{}.withDefaults(), learned: l, rps: (&rpTable{names: v.rps}).clone(), mono: true}
	r.view.Store(v)
	r.setLastSync(time.Unix(0, last))
	return r
}

// query is one Allowed call's arguments.
type query struct {
	user string
	cred []byte
}

// queries lays n queries for rows out back to back in one buffer, in the
// order of a seeded shuffle: the benchmark reads its own input in order (the
// CPU prefetches it) while the replica is read at random.
func queries(rows []registry.ValidCredential, n int) []query {
	rng := rand.New(rand.NewPCG(9, 9))
	perm := rng.Perm(len(rows))[:n]
	size := 0
	for _, i := range perm {
		size += len(rows[i].UserID) + len(rows[i].CredentialID)
	}
	buf := make([]byte, 0, size)
	qs := make([]query, n)
	for j, i := range perm {
		o := len(buf)
		buf = append(buf, rows[i].UserID...)
		u := len(buf)
		buf = append(buf, rows[i].CredentialID...)
		qs[j] = query{user: unsafe.String(&buf[o], u-o), cred: buf[u:len(buf):len(buf)]}
	}
	return qs
}

// BenchmarkAllowed is one Allowed call on the 1M-credential replica for a
// known credential of a user picked at random among all 500,000, from
// every core at once: most calls miss the CPU caches.
func BenchmarkAllowed(b *testing.B) {
	path, rows := snapshot1M(b)
	r := replicaFrom(b, path)
	qs := queries(rows, len(rows))
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1) * 100_003)
		for pb.Next() {
			c := &qs[i%len(qs)]
			if !r.Allowed(c.user, c.cred).Allowed {
				b.Fatal("refused a valid credential")
			}
			i++
		}
	})
}

// BenchmarkAllowedHot is Allowed over 4,096 users of the 1M-credential
// replica (their entries stay in the CPU caches, as a login server's busy
// users' would); BenchmarkAllowed picks from all 500,000 users, so most calls
// miss the caches, in the benchmark's own rows as well as in the replica.
func BenchmarkAllowedHot(b *testing.B) {
	path, rows := snapshot1M(b)
	r := replicaFrom(b, path)
	qs := queries(rows, 4096)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := &qs[i&4095]
		if !r.Allowed(c.user, c.cred).Allowed {
			b.Fatal("refused a valid credential")
		}
	}
}

// BenchmarkAllowedUnknown is Allowed for a user the replica does not hold.
func BenchmarkAllowedUnknown(b *testing.B) {
	path, _ := snapshot1M(b)
	r := replicaFrom(b, path)
	cred := []byte("unknown-credential")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r.Allowed("usr_000000000000000000000000", cred).Allowed {
			b.Fatal("allowed an unknown user")
		}
	}
}

// BenchmarkSnapshotLoad reads the 1M-credential snapshot from disk (page
// cache warm) and indexes it; it reports the file's size.
func BenchmarkSnapshotLoad(b *testing.B) {
	path, _ := snapshot1M(b)
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		v, _, _, err := readSnapshot(path)
		if err != nil {
			b.Fatal(err)
		}
		if v.creds != benchUsers*benchPerUser {
			b.Fatalf("%d credentials", v.creds)
		}
	}
	b.ReportMetric(float64(fi.Size())/1e6, "file-MB")
}

// BenchmarkReplicaRSS starts a child process that loads the 1M-credential
// snapshot and reports its resident set (VmRSS after a collection, and
// VmHWM, the peak) and its load time.
func BenchmarkReplicaRSS(b *testing.B) {
	path, _ := snapshot1M(b)
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestRSSChild$")
		cmd.Env = append(os.Environ(), "VALIDITY_RSS_SNAPSHOT="+path)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("child: %v\n%s", err, out)
		}
		var rss, hwm, ms float64
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "RSS" {
				rss, _ = strconv.ParseFloat(f[1], 64)
				hwm, _ = strconv.ParseFloat(f[2], 64)
				ms, _ = strconv.ParseFloat(f[3], 64)
			}
		}
		if rss == 0 {
			b.Fatalf("child printed no figures:\n%s", out)
		}
		b.ReportMetric(rss/1024, "rss-MB")
		b.ReportMetric(hwm/1024, "peak-rss-MB")
		b.ReportMetric(ms, "load-ms")
	}
}

// TestRSSChild is BenchmarkReplicaRSS's child; it does nothing unless the
// benchmark started it.
func TestRSSChild(t *testing.T) {
	path := os.Getenv("VALIDITY_RSS_SNAPSHOT")
	if path == "" {
		t.Skip("run by BenchmarkReplicaRSS")
	}
	start := time.Now()
	v, _, _, err := readSnapshot(path)
	if err != nil {
		t.Fatal(err)
	}
	load := time.Since(start)
	runtime.GC()
	debug.FreeOSMemory()
	st, _ := os.ReadFile("/proc/self/status")
	var rss, hwm string
	for _, l := range strings.Split(string(st), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "VmRSS:" {
			rss = f[1]
		}
		if len(f) >= 2 && f[0] == "VmHWM:" {
			hwm = f[1]
		}
	}
	fmt.Printf("RSS %s %s %d\n", rss, hwm, load.Milliseconds())
	runtime.KeepAlive(v)
}
