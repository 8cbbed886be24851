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

// TamperError names the first entry or checkpoint that does not verify.
type TamperError struct {
	Seq    int64
	Reason string
}

func (e *TamperError) Error() string { return fmt.Sprintf("audit entry %d: %s", e.Seq, e.Reason) }

// ErrNoCheckpoint: the chain has entries but no checkpoint covers them.
var ErrNoCheckpoint = errors.New("no signed checkpoint")

// Report summarises a successful verification.
type Report struct {
	Entries     int64
	Checkpoints int
	Head        []byte
}

// Verify checks entries (in seq order, starting at 1) and the checkpoints
// against pub. Entries after the last checkpoint are chain-checked only.
func Verify(entries []Entry, checkpoints []Checkpoint, pub ed25519.PublicKey) (Report, error) {
	prev := Genesis
	bySeq := make(map[int64][]byte, len(checkpoints))
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
		bySeq[e.Seq] = e.Hash
		prev = e.Hash
	}
	for _, c := range checkpoints {
		h, ok := bySeq[c.Seq]
		if !ok {
			return Report{}, &TamperError{Seq: c.Seq, Reason: "checkpoint names an entry that is missing"}
		}
		if !bytes.Equal(h, c.Hash) {
			return Report{}, &TamperError{Seq: c.Seq, Reason: "entry hash differs from the signed checkpoint"}
		}
		if !ed25519.Verify(pub, checkpointMessage(c.Seq, c.Hash), c.Signature) {
			return Report{}, &TamperError{Seq: c.Seq, Reason: "checkpoint signature invalid"}
		}
	}
	if len(entries) > 0 && len(checkpoints) == 0 {
		return Report{}, ErrNoCheckpoint
	}
	return Report{Entries: int64(len(entries)), Checkpoints: len(checkpoints), Head: prev}, nil
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
