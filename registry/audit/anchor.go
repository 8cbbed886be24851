package audit

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
)

// PendingKey derives the key that authenticates pending rows (audit
// entries committed before they are chained) from the signing key's seed,
// with HKDF-SHA256 (RFC 5869) under its own label: only a process holding
// the signing key can produce a pending row the sequencer will chain.
func PendingKey(signer ed25519.PrivateKey) []byte {
	k, err := hkdf.Key(sha256.New, signer.Seed(), nil, "keydesk audit pending-row mac v1", 32)
	if err != nil {
		panic(err) // only for lengths HKDF-SHA256 cannot produce
	}
	return k
}

// PendingMAC is HMAC-SHA256 under key over a length-prefixed encoding of
// a pending entry's time, actor, action and payload.
func PendingMAC(key []byte, e *Entry) []byte {
	m := hmac.New(sha256.New, key)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(e.Time))
	m.Write(n[:])
	for _, f := range [][]byte{[]byte(e.Actor), []byte(e.Action), e.Payload} {
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		m.Write(n[:])
		m.Write(f)
	}
	return m.Sum(nil)
}

// SignedHead is a checkpoint as an operator exports and anchors it: the
// witness file's format and the output of `keydesk-registry audit head`.
type SignedHead struct {
	Seq       int64  `json:"seq"`
	Hash      string `json:"hash"`      // hex
	Signature string `json:"signature"` // hex, ed25519
	PublicKey string `json:"public_key,omitempty"`
}

// Export turns c into a SignedHead.
func Export(c Checkpoint, pub ed25519.PublicKey) SignedHead {
	h := SignedHead{Seq: c.Seq, Hash: hex.EncodeToString(c.Hash), Signature: hex.EncodeToString(c.Signature)}
	if pub != nil {
		h.PublicKey = hex.EncodeToString(pub)
	}
	return h
}

// Checkpoint parses h back into a checkpoint.
func (h SignedHead) Checkpoint() (Checkpoint, error) {
	hash, err := hex.DecodeString(h.Hash)
	if err != nil || len(hash) != sha256.Size {
		return Checkpoint{}, errors.New("hash is not 32 bytes of hex")
	}
	sig, err := hex.DecodeString(h.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return Checkpoint{}, errors.New("signature is not 64 bytes of hex")
	}
	if h.Seq < 1 {
		return Checkpoint{}, errors.New("seq must be positive")
	}
	return Checkpoint{Seq: h.Seq, Hash: hash, Signature: sig}, nil
}

// ReadHead reads a SignedHead file.
func ReadHead(path string) (Checkpoint, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("reading signed head: %w", err)
	}
	var h SignedHead
	if err := json.Unmarshal(b, &h); err != nil {
		return Checkpoint{}, fmt.Errorf("reading signed head %s: %w", path, err)
	}
	c, err := h.Checkpoint()
	if err != nil {
		return Checkpoint{}, fmt.Errorf("reading signed head %s: %w", path, err)
	}
	return c, nil
}

// WitnessFile is the witness's name in the state dir.
const WitnessFile = "audit-witness.json"

// Witness keeps the newest signed head outside the database: a file in the
// state dir, replaced (written to a temporary file, then renamed over it,
// mode 0600) after every checkpoint, and a log line per checkpoint. A
// database truncated or rewritten behind the registry's back no longer
// contains the witnessed head, which VerifyLog reports. The file is not
// synced on every checkpoint: after a power failure it may lag behind the
// database, which verification accepts (the chain only has to contain it).
type Witness struct {
	// Log, when set, gets one line per checkpoint (LogCheckpoint): the
	// server sets it, one-shot commands leave it nil.
	Log *slog.Logger

	path string
	pub  ed25519.PublicKey
	mu   sync.Mutex
	last Checkpoint // the newest head recorded or read; Seq 0 when none
}

// OpenWitness opens dir's witness, reading the head it holds. A file that
// does not parse or whose signature is not pub's is an error: it is
// evidence to look at, not something to overwrite.
func OpenWitness(dir string, pub ed25519.PublicKey) (*Witness, error) {
	w := &Witness{path: filepath.Join(dir, WitnessFile), pub: pub}
	c, err := ReadHead(w.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return w, nil
	case err != nil:
		return nil, fmt.Errorf("audit witness: %w", err)
	case !VerifyCheckpoint(pub, c):
		return nil, fmt.Errorf("audit witness %s: not signed by this registry's audit key", w.path)
	}
	w.last = c
	return w, nil
}

// Path is the witness file.
func (w *Witness) Path() string { return w.path }

// Latest is the newest head the witness holds.
func (w *Witness) Latest() (Checkpoint, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last, w.last.Seq > 0
}

// Heads are the heads a verification checks the chain against: the one in
// memory and, when it differs, the one in the file now.
func (w *Witness) Heads() ([]Checkpoint, error) {
	var out []Checkpoint
	if c, ok := w.Latest(); ok {
		out = append(out, c)
	}
	c, err := ReadHead(w.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("audit witness: %w", err)
	case len(out) == 0 || c.Seq != out[0].Seq:
		out = append(out, c)
	}
	return out, nil
}

// Record logs the checkpoint and makes it the witnessed head if it is newer
// than the one held; rewritten (a restore replaced the chain) replaces the
// head whatever its seq.
func (w *Witness) Record(c Checkpoint, rewritten bool) error {
	if w.Log != nil {
		LogCheckpoint(w.Log, c, rewritten)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !rewritten && c.Seq <= w.last.Seq {
		return nil
	}
	b, err := json.Marshal(Export(c, w.pub))
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(w.path), ".audit-witness-*")
	if err == nil {
		_, err = tmp.Write(append(b, '\n'))
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), w.path) // CreateTemp made it 0600
		}
		if err != nil {
			os.Remove(tmp.Name())
		}
	}
	if err != nil {
		if w.Log != nil {
			w.Log.Error("audit witness not written", "path", w.path, "seq", c.Seq, "err", err)
		}
		return fmt.Errorf("writing audit witness: %w", err)
	}
	w.last = c
	return nil
}

// LogCheckpoint is the one log line per checkpoint, so the head is also
// kept wherever the registry's log goes.
func LogCheckpoint(l *slog.Logger, c Checkpoint, rewritten bool) {
	l.Info("audit checkpoint", "seq", c.Seq, "hash", hex.EncodeToString(c.Hash), "rewritten", rewritten)
}

// LogRejected is the log line for a pending row that was not chained.
func LogRejected(r Rejected) {
	slog.Warn("audit pending row rejected: authentication code does not match", "id", r.ID, "actor", r.Actor, "action", r.Action)
}
