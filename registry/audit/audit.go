// Package audit owns the registry's tamper-evident log: an append-only hash
// chain of entries (seq, time, actor, action, payload, prev_hash, hash) and
// checkpoints signed with the registry's ed25519 key.
//
// Each entry's hash is SHA-256 over a length-prefixed encoding of its fields
// and the previous entry's hash, so changing, inserting or removing any row
// breaks every later hash. A checkpoint signs (seq, hash) of one entry, so a
// rewritten chain (all hashes recomputed) no longer matches the signatures.
package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Entry is one row of the audit log.
type Entry struct {
	Seq      int64  `json:"seq"`
	Time     int64  `json:"time"` // Unix nanoseconds, UTC
	Actor    string `json:"actor"`
	Action   string `json:"action"`
	Payload  []byte `json:"payload"` // JSON
	PrevHash []byte `json:"prev_hash"`
	Hash     []byte `json:"hash"`
}

// Checkpoint is a signature by the registry key over one entry's seq and hash.
type Checkpoint struct {
	Seq       int64  `json:"seq"`
	Hash      []byte `json:"hash"`
	Signature []byte `json:"signature"`
}

// Genesis is the prev_hash of the first entry.
var Genesis = make([]byte, sha256.Size)

// Hash computes the hash of e from its fields and e.PrevHash.
func Hash(e *Entry) []byte {
	h := sha256.New()
	var n [8]byte
	h.Write([]byte("keydesk-audit-v1\x00"))
	binary.BigEndian.PutUint64(n[:], uint64(e.Seq))
	h.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(e.Time))
	h.Write(n[:])
	for _, f := range [][]byte{[]byte(e.Actor), []byte(e.Action), e.Payload, e.PrevHash} {
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		h.Write(n[:])
		h.Write(f)
	}
	return h.Sum(nil)
}

// Seal fills e.Hash, chaining it after prevSeq/prevHash.
func Seal(e *Entry, prevSeq int64, prevHash []byte) {
	e.Seq = prevSeq + 1
	if prevHash == nil {
		prevHash = Genesis
	}
	e.PrevHash = append([]byte(nil), prevHash...)
	e.Hash = Hash(e)
}

func checkpointMessage(seq int64, hash []byte) []byte {
	return []byte("keydesk-audit-checkpoint-v1\n" + strconv.FormatInt(seq, 10) + "\n" + fmt.Sprintf("%x", hash))
}

// Sign makes a checkpoint over (seq, hash).
func Sign(key ed25519.PrivateKey, seq int64, hash []byte) Checkpoint {
	return Checkpoint{Seq: seq, Hash: hash, Signature: ed25519.Sign(key, checkpointMessage(seq, hash))}
}

// ErrTampered matches every TamperError: the audit log or its anchors were
// changed other than by the registry's own write path.
var ErrTampered = errors.New("audit log tampered")

// TamperError names the first entry or checkpoint that does not verify. A
// pending entry that was not written by the registry (its authentication
// code fails, see PendingMAC) has no seq yet: Pending is its row id.
type TamperError struct {
	Seq     int64
	Pending int64
	Reason  string
	err     error // a sentinel it also matches (ErrNoCheckpoint)
}

func (e *TamperError) Error() string {
	if e.Seq == 0 && e.Pending != 0 {
		return fmt.Sprintf("pending audit row %d: %s", e.Pending, e.Reason)
	}
	return fmt.Sprintf("audit entry %d: %s", e.Seq, e.Reason)
}

// Is makes every TamperError match ErrTampered.
func (e *TamperError) Is(target error) bool { return target == ErrTampered }

func (e *TamperError) Unwrap() error { return e.err }

// ErrNoCheckpoint: the chain has entries but no checkpoint covers them.
var ErrNoCheckpoint = errors.New("no signed checkpoint")

// Head is where the chain ends as the registry_head row records it.
type Head struct {
	Seq  int64
	Hash []byte
}

// Rejected is a pending entry whose authentication code does not match:
// a row the registry's write path did not produce. It is never chained.
type Rejected struct {
	ID     int64  `json:"id"`
	Actor  string `json:"actor"`
	Action string `json:"action"`
}

// Log is everything one verification looks at, read in one snapshot.
type Log struct {
	Entries     []Entry
	Checkpoints []Checkpoint
	// Head is the registry_head row; nil skips the comparison (an export
	// bundle carries none).
	Head *Head
	// Witnesses are signed heads kept outside the database: the state
	// dir's witness file, the head this process last signed, a head an
	// operator exported earlier (keydesk-registry audit head).
	Witnesses []Checkpoint
	// Rejected are pending rows whose authentication code failed.
	Rejected []Rejected
	// Pending counts authentic entries still waiting to be chained.
	Pending int
}

// Report summarises a successful verification.
type Report struct {
	Entries     int64
	Checkpoints int
	Head        []byte
	// Signed is the newest checkpoint: it covers the newest entry.
	Signed  Checkpoint
	Pending int
}

// Verify checks entries (in seq order, starting at 1) and checkpoints
// against pub, as VerifyLog does with no head row and no witness.
func Verify(entries []Entry, checkpoints []Checkpoint, pub ed25519.PublicKey) (Report, error) {
	return VerifyLog(Log{Entries: entries, Checkpoints: checkpoints}, pub)
}

// VerifyLog checks, in this order, and reports the first failure as a
// *TamperError naming the entry: the hash chain (every entry chains from
// the one before and hashes to its stored hash); every checkpoint (it
// names an entry that exists, signs that entry's hash, and its signature
// is valid); that the newest entry is covered by a checkpoint (entries
// after the newest valid checkpoint were added or rewritten without the
// registry key); that the chain ends where the registry_head row says
// (fewer entries: truncated); that every witness is signed and its entry
// is in the chain with the same hash (missing: truncated; different:
// rewritten); and that no pending row failed its authentication code.
//
// What it cannot see: anyone holding the signing key can write a chain
// that verifies, and a database rolled back together with every witness
// to an older consistent state verifies as that state.
func VerifyLog(l Log, pub ed25519.PublicKey) (Report, error) {
	entries, checkpoints := l.Entries, l.Checkpoints
	prev := Genesis
	for i := range entries {
		e := &entries[i]
		if e.Seq != int64(i+1) {
			return Report{}, &TamperError{Seq: e.Seq, Reason: fmt.Sprintf("sequence gap: expected %d", i+1)}
		}
		if !bytes.Equal(e.PrevHash, prev) {
			return Report{}, &TamperError{Seq: e.Seq, Reason: "prev_hash does not match the previous entry"}
		}
		if !bytes.Equal(Hash(e), e.Hash) {
			return Report{}, &TamperError{Seq: e.Seq, Reason: "hash does not match the entry's contents"}
		}
		prev = e.Hash
	}
	last := int64(len(entries))
	hashAt := func(seq int64) []byte {
		if seq < 1 || seq > last {
			return nil
		}
		return entries[seq-1].Hash
	}
	var signed Checkpoint
	for _, c := range checkpoints {
		h := hashAt(c.Seq)
		if h == nil {
			return Report{}, &TamperError{Seq: c.Seq, Reason: "checkpoint names an entry that is missing"}
		}
		if !bytes.Equal(h, c.Hash) {
			return Report{}, &TamperError{Seq: c.Seq, Reason: "entry hash differs from the signed checkpoint"}
		}
		if !ed25519.Verify(pub, checkpointMessage(c.Seq, c.Hash), c.Signature) {
			return Report{}, &TamperError{Seq: c.Seq, Reason: "checkpoint signature invalid"}
		}
		if c.Seq > signed.Seq {
			signed = c
		}
	}
	if last > 0 && len(checkpoints) == 0 {
		return Report{}, &TamperError{Seq: 1, Reason: "no signed checkpoint covers the chain", err: ErrNoCheckpoint}
	}
	if signed.Seq < last {
		return Report{}, &TamperError{Seq: signed.Seq + 1, Reason: fmt.Sprintf("not covered by a signed checkpoint (entries %d to %d were added or rewritten without the registry key)", signed.Seq+1, last)}
	}
	if h := l.Head; h != nil {
		switch {
		case h.Seq > last:
			return Report{}, &TamperError{Seq: last + 1, Reason: fmt.Sprintf("missing: the registry head says the chain reaches entry %d (truncated)", h.Seq)}
		case h.Seq < last:
			return Report{}, &TamperError{Seq: h.Seq + 1, Reason: fmt.Sprintf("beyond the registry head (entry %d)", h.Seq)}
		case last > 0 && !bytes.Equal(h.Hash, prev):
			return Report{}, &TamperError{Seq: last, Reason: "hash differs from the registry head"}
		}
	}
	for _, w := range l.Witnesses {
		if !ed25519.Verify(pub, checkpointMessage(w.Seq, w.Hash), w.Signature) {
			return Report{}, &TamperError{Seq: w.Seq, Reason: "the witnessed head's signature is invalid"}
		}
		h := hashAt(w.Seq)
		if h == nil {
			return Report{}, &TamperError{Seq: last + 1, Reason: fmt.Sprintf("missing: a signed head outside the database (witness) shows the chain reached entry %d (truncated)", w.Seq)}
		}
		if !bytes.Equal(h, w.Hash) {
			return Report{}, &TamperError{Seq: w.Seq, Reason: "hash differs from the signed head outside the database (witness): rewritten"}
		}
	}
	if len(l.Rejected) > 0 {
		r := l.Rejected[0]
		more := ""
		if len(l.Rejected) > 1 {
			more = fmt.Sprintf(" (and %d more)", len(l.Rejected)-1)
		}
		return Report{}, &TamperError{Pending: r.ID, Reason: fmt.Sprintf("%s by %q was not written by the registry (its authentication code does not match); it was not chained%s", r.Action, r.Actor, more)}
	}
	return Report{Entries: last, Checkpoints: len(checkpoints), Head: prev, Signed: signed, Pending: l.Pending}, nil
}

// VerifyCheckpoint reports whether c carries pub's signature over its seq
// and hash.
func VerifyCheckpoint(pub ed25519.PublicKey, c Checkpoint) bool {
	return ed25519.Verify(pub, checkpointMessage(c.Seq, c.Hash), c.Signature)
}

const keyFile = "audit-signing-key.pem"

// LoadOrCreateKey reads the registry's checkpoint key from dir, creating it
// (mode 0600) on first use.
func LoadOrCreateKey(dir string) (ed25519.PrivateKey, error) {
	p := filepath.Join(dir, keyFile)
	b, err := os.ReadFile(p)
	if err == nil {
		blk, _ := pem.Decode(b)
		if blk == nil || blk.Type != "ED25519 PRIVATE KEY" || len(blk.Bytes) != ed25519.SeedSize {
			return nil, fmt.Errorf("reading audit key %s: not an ed25519 seed in PEM", p)
		}
		return ed25519.NewKeyFromSeed(blk.Bytes), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("reading audit key: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating audit key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating state dir: %w", err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "ED25519 PRIVATE KEY", Bytes: priv.Seed()})
	if err := os.WriteFile(p, out, 0o600); err != nil {
		return nil, fmt.Errorf("writing audit key: %w", err)
	}
	return priv, nil
}
