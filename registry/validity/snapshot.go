package validity

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/maphash"
	"io"
	"os"
	"path/filepath"
	"sort"
	"unsafe"

	"github.com/keydesk/keydesk/registry"
)

// The replica keeps the validity view in one byte arena per snapshot: each
// user is one record, the user's credentials follow it, and an index maps
// the user's encoded id to the record's offset. Index keys point into the
// arena (no allocation per user), so 1M credentials cost little more than
// their bytes (docs/relying-party.md has the figures). The arena of a view
// is never written after the view is published; users changed since are
// kept in a small overlay until the next compaction.
//
// Record: uvarint len, user id | uvarint len, external id | uvarint n | n
// credentials. Credential: kind byte (0 fido2, 1 piv) | key id | uvarint
// len, serial | uvarint len, credential id (fido2) or slot (piv) | uvarint
// rp index (fido2) | public key. A public key is uvarint len and its bytes,
// or, for a COSE ES256 key in the CTAP2 canonical layout every authenticator
// sends (CTAP 2.1 §6, "CTAP2 canonical CBOR encoding form"), a 0 and the 64
// bytes of x and y.
// A key id is encoded compactly when it has the registry's shape
// (sqlstore.NewID: a lowercase prefix, "_", 24 hex digits): 0x80|len(prefix),
// the prefix, 12 bytes; any other id is its length (< 0x80) and its bytes.

const (
	kindFIDO2 = 0
	kindPIV   = 1
	// maxID is the longest id the encoding takes.
	maxID = 0x7f
)

// errCorrupt: a snapshot's bytes do not decode.
var errCorrupt = errors.New("validity snapshot is corrupt")

// appendID appends the encoding of id to b.
func appendID(b []byte, id string) ([]byte, error) {
	if i := len(id) - 25; i >= 1 && i <= 8 && id[i] == '_' && isLowerAlpha(id[:i]) {
		var raw [12]byte
		if _, err := hex.Decode(raw[:], []byte(id[i+1:])); err == nil && hex.EncodeToString(raw[:]) == id[i+1:] {
			b = append(b, byte(0x80|i))
			b = append(b, id[:i]...)
			return append(b, raw[:]...), nil
		}
	}
	if len(id) > maxID {
		return b, fmt.Errorf("id of %d bytes: longer than %d", len(id), maxID)
	}
	b = append(b, byte(len(id)))
	return append(b, id...), nil
}

func isLowerAlpha(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 'a' || s[i] > 'z' {
			return false
		}
	}
	return len(s) > 0
}

// idLen is the length of the encoded id at b[0:].
func idLen(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	var n int
	if b[0]&0x80 != 0 {
		n = 1 + int(b[0]&0x7f) + 12
	} else {
		n = 1 + int(b[0])
	}
	if n > len(b) {
		return -1
	}
	return n
}

// decodeID turns an encoded id back into its text.
func decodeID(b []byte) string {
	if b[0]&0x80 == 0 {
		return string(b[1:])
	}
	p := int(b[0] & 0x7f)
	return string(b[1:1+p]) + "_" + hex.EncodeToString(b[1+p:1+p+12])
}

// reader walks an arena; any overrun sets bad.
type reader struct {
	b   []byte
	off int
	bad bool
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b[min(r.off, len(r.b)):])
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.off += n
	return v
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.bad || n > uint64(len(r.b)-r.off) {
		r.bad = true
		return nil
	}
	s := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return s
}

func (r *reader) id() []byte {
	n := idLen(r.b[min(r.off, len(r.b)):])
	if n < 0 {
		r.bad = true
		return nil
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s
}

func (r *reader) byte1() byte {
	if r.off >= len(r.b) {
		r.bad = true
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

// userRecord is one user's entry as the builder takes it.
type userRecord struct {
	UserID     string
	ExternalID string
	Creds      []registry.ValidCredential
}

// appendRecord encodes u (the credentials of one user) onto b, naming rp
// ids through rps.
func appendRecord(b []byte, u userRecord, rps *rpTable) ([]byte, error) {
	var err error
	b = binary.AppendUvarint(b, uint64(len(u.UserID)))
	b = append(b, u.UserID...)
	b = binary.AppendUvarint(b, uint64(len(u.ExternalID)))
	b = append(b, u.ExternalID...)
	b = binary.AppendUvarint(b, uint64(len(u.Creds)))
	for _, c := range u.Creds {
		if c.Kind == "piv" {
			b = append(b, kindPIV)
		} else {
			b = append(b, kindFIDO2)
		}
		if b, err = appendID(b, c.KeyID); err != nil {
			return b, fmt.Errorf("key %q: %w", c.KeyID, err)
		}
		b = binary.AppendUvarint(b, uint64(len(c.Serial)))
		b = append(b, c.Serial...)
		if c.Kind == "piv" {
			b = binary.AppendUvarint(b, uint64(len(c.Slot)))
			b = append(b, c.Slot...)
		} else {
			b = binary.AppendUvarint(b, uint64(len(c.CredentialID)))
			b = append(b, c.CredentialID...)
			b = binary.AppendUvarint(b, uint64(rps.index(c.RPID)))
		}
		b = appendPub(b, c.PublicKey)
	}
	return b, nil
}

// es256Prefix, es256Mid frame x and y in a canonical COSE ES256 key:
// {1: 2, 3: -7, -1: 1, -2: x, -3: y} (RFC 9053 §2.1, §7.1.1).
var (
	es256Prefix = []byte{0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21, 0x58, 0x20}
	es256Mid    = []byte{0x22, 0x58, 0x20}
)

const es256Len = 10 + 32 + 3 + 32

func appendPub(b, pub []byte) []byte {
	if len(pub) == es256Len && bytes.HasPrefix(pub, es256Prefix) && bytes.Equal(pub[42:45], es256Mid) {
		b = append(b, 0)
		b = append(b, pub[10:42]...)
		return append(b, pub[45:]...)
	}
	b = binary.AppendUvarint(b, uint64(len(pub)))
	return append(b, pub...)
}

// pub reads a public key; expand rebuilds a compressed one (else the
// bytes are only skipped and nil is returned for it).
func (r *reader) pub(expand bool) []byte {
	n := r.uvarint()
	if r.bad {
		return nil
	}
	if n != 0 {
		if n > uint64(len(r.b)-r.off) {
			r.bad = true
			return nil
		}
		p := r.b[r.off : r.off+int(n)]
		r.off += int(n)
		return p
	}
	if len(r.b)-r.off < 64 {
		r.bad = true
		return nil
	}
	xy := r.b[r.off : r.off+64]
	r.off += 64
	if !expand {
		return nil
	}
	p := make([]byte, 0, es256Len)
	p = append(p, es256Prefix...)
	p = append(p, xy[:32]...)
	p = append(p, es256Mid...)
	return append(p, xy[32:]...)
}

// rpTable names the few relying-party ids of a replica once.
type rpTable struct {
	names []string
	idx   map[string]int
}

func (t *rpTable) index(rp string) int {
	if i, ok := t.idx[rp]; ok {
		return i
	}
	if t.idx == nil {
		t.idx = map[string]int{}
	}
	t.names = append(t.names, rp)
	t.idx[rp] = len(t.names) - 1
	return len(t.names) - 1
}

// clone copies t for a writer that may add names.
func (t *rpTable) clone() *rpTable {
	c := &rpTable{names: append([]string(nil), t.names...), idx: make(map[string]int, len(t.names))}
	for i, n := range t.names {
		c.idx[n] = i
	}
	return c
}

// recordEnd returns where the record starting at off ends, and the user's
// credential count; -1 when it does not decode.
func recordEnd(b []byte, off int) (end, creds int) {
	r := reader{b: b, off: off}
	r.bytes()
	r.bytes()
	n := r.uvarint()
	for i := uint64(0); i < n && !r.bad; i++ {
		k := r.byte1()
		r.id()
		r.bytes()
		r.bytes()
		if k == kindFIDO2 {
			r.uvarint()
		}
		r.pub(false)
	}
	if r.bad {
		return -1, 0
	}
	return r.off, int(n)
}

// hasCredential reports whether the record rec holds the FIDO2 credential
// id. It runs on every Allowed call: no allocation.
func hasCredential(rec []byte, credID []byte) bool {
	r := reader{b: rec}
	r.bytes()
	r.bytes()
	n := r.uvarint()
	for i := uint64(0); i < n && !r.bad; i++ {
		k := r.byte1()
		r.id()
		r.bytes()
		id := r.bytes()
		if k == kindFIDO2 {
			r.uvarint()
			if bytes.Equal(id, credID) && !r.bad {
				return true
			}
		}
		r.pub(false)
	}
	return false
}

// decodeRecord turns a record back into validity rows.
func decodeRecord(rec []byte, rps []string) (userRecord, error) {
	r := reader{b: rec}
	var u userRecord
	uid := r.bytes()
	ext := r.bytes()
	n := r.uvarint()
	if r.bad {
		return u, errCorrupt
	}
	u.UserID, u.ExternalID = string(uid), string(ext)
	for i := uint64(0); i < n && !r.bad; i++ {
		c := registry.ValidCredential{UserID: u.UserID, ExternalID: u.ExternalID}
		k := r.byte1()
		kid := r.id()
		c.Serial = string(r.bytes())
		v := r.bytes()
		if k == kindFIDO2 {
			c.Kind = "fido2"
			c.CredentialID = append([]byte(nil), v...)
			rp := r.uvarint()
			if rp >= uint64(len(rps)) {
				return u, errCorrupt
			}
			c.RPID = rps[rp]
		} else {
			c.Kind, c.Slot = "piv", string(v)
		}
		c.PublicKey = append([]byte(nil), r.pub(true)...)
		if r.bad {
			return u, errCorrupt
		}
		c.KeyID = decodeID(kid)
		u.Creds = append(u.Creds, c)
	}
	if r.bad {
		return u, errCorrupt
	}
	return u, nil
}

// recordKeys calls f with every key id in rec (encoded).
func recordKeys(rec []byte, f func(keyID []byte)) {
	r := reader{b: rec}
	r.bytes()
	r.bytes()
	n := r.uvarint()
	for i := uint64(0); i < n && !r.bad; i++ {
		k := r.byte1()
		kid := r.id()
		r.bytes()
		r.bytes()
		if k == kindFIDO2 {
			r.uvarint()
		}
		r.pub(false)
		if !r.bad {
			f(kid)
		}
	}
}

// view is one published state of the replica. Nothing in it changes after
// it is published; readers load it through an atomic pointer.
type view struct {
	arena []byte
	index *table // user id → record in arena
	// overlay holds users changed since the arena was built: their record,
	// or nil when they have no valid credential now.
	overlay map[string][]byte
	rps     []string
	cursor  int64
	users   int // users with at least one valid credential
	creds   int
}

// record returns the encoded user's record, nil when the user has no
// valid credential.
func (v *view) record(key string) []byte {
	if len(v.overlay) > 0 {
		if rec, ok := v.overlay[key]; ok {
			return rec
		}
	}
	return v.index.lookup(v.arena, key)
}

// each calls f with every record of v (overlay first wins).
func (v *view) each(f func(key string, rec []byte) error) error {
	for _, slot := range v.index.slots {
		if slot == 0 {
			continue
		}
		off := int(slot - 1)
		k := recordUser(v.arena[off:])
		if _, ok := v.overlay[k]; ok {
			continue
		}
		end, _ := recordEnd(v.arena, off)
		if end < 0 {
			return errCorrupt
		}
		if err := f(k, v.arena[off:end]); err != nil {
			return err
		}
	}
	for k, rec := range v.overlay {
		if rec == nil {
			continue
		}
		if err := f(k, rec); err != nil {
			return err
		}
	}
	return nil
}

// table is an open-addressing hash index from user id to record: each
// slot holds a record's offset + 1 (0 is empty), and the key is read from
// the record itself, so the index costs 4 bytes a slot and no more. It is
// at most half full.
type table struct {
	seed  maphash.Seed
	slots []uint32
	n     int
}

func newTable(n int) *table {
	size := 16
	for size < 2*n {
		size *= 2
	}
	return &table{seed: maphash.MakeSeed(), slots: make([]uint32, size)}
}

// recordUser is the user id a record starts with (a string over the
// arena's bytes: no copy).
func recordUser(rec []byte) string {
	n, k := binary.Uvarint(rec)
	if k <= 0 || n == 0 || n > uint64(len(rec)-k) {
		return ""
	}
	return unsafe.String(&rec[k], int(n))
}

func (t *table) lookup(arena []byte, key string) []byte {
	if t == nil {
		return nil
	}
	mask := uint64(len(t.slots) - 1)
	for i := maphash.String(t.seed, key) & mask; ; i = (i + 1) & mask {
		s := t.slots[i]
		if s == 0 {
			return nil
		}
		if rec := arena[s-1:]; recordUser(rec) == key {
			return rec
		}
	}
}

// insert adds the record at off; false when its user is there already.
func (t *table) insert(arena []byte, off int) bool {
	key := recordUser(arena[off:])
	mask := uint64(len(t.slots) - 1)
	for i := maphash.String(t.seed, key) & mask; ; i = (i + 1) & mask {
		s := t.slots[i]
		if s == 0 {
			t.slots[i] = uint32(off + 1)
			t.n++
			return true
		}
		if recordUser(arena[s-1:]) == key {
			return false
		}
	}
}

// indexArena builds the index of an arena holding n records.
func indexArena(arena []byte, n int) (*table, int, error) {
	if len(arena) >= 1<<32-1 {
		return nil, 0, fmt.Errorf("validity arena of %d bytes: over 4 GiB", len(arena))
	}
	idx := newTable(n)
	creds := 0
	for off := 0; off < len(arena); {
		end, c := recordEnd(arena, off)
		if end < 0 || recordUser(arena[off:]) == "" {
			return nil, 0, errCorrupt
		}
		if idx.n >= n || !idx.insert(arena, off) {
			return nil, 0, fmt.Errorf("%w: more records than the header's %d, or a user twice", errCorrupt, n)
		}
		creds += c
		off = end
	}
	if idx.n != n {
		return nil, 0, fmt.Errorf("%w: %d records, header says %d", errCorrupt, idx.n, n)
	}
	return idx, creds, nil
}

// compact builds a view with no overlay from v.
func compact(v *view) (*view, error) {
	size := len(v.arena)
	for _, rec := range v.overlay {
		size += len(rec)
	}
	arena := make([]byte, 0, size)
	n := 0
	err := v.each(func(_ string, rec []byte) error {
		arena = append(arena, rec...)
		n++
		return nil
	})
	if err != nil {
		return nil, err
	}
	idx, creds, err := indexArena(arena, n)
	if err != nil {
		return nil, err
	}
	return &view{arena: arena, index: idx, rps: v.rps, cursor: v.cursor, users: n, creds: creds}, nil
}

// buildView makes a view from whole validity rows (ordered or not).
func buildView(rows []registry.ValidCredential, cursor int64) (*view, error) {
	b := newBuilder()
	for _, c := range rows {
		if err := b.add(c); err != nil {
			return nil, err
		}
	}
	return b.finish(cursor)
}

// builder assembles an arena from validity rows arriving grouped by user
// (the registry orders the view by user); a user seen again later is merged.
type builder struct {
	arena []byte
	rps   *rpTable
	cur   userRecord
	seen  map[string]bool
	late  map[string][]registry.ValidCredential // users whose rows were not contiguous
}

func newBuilder() *builder {
	return &builder{rps: &rpTable{}, seen: map[string]bool{}}
}

func (b *builder) add(c registry.ValidCredential) error {
	if c.UserID == b.cur.UserID && b.cur.UserID != "" {
		b.cur.Creds = append(b.cur.Creds, c)
		return nil
	}
	if err := b.flush(); err != nil {
		return err
	}
	if b.seen[c.UserID] {
		if b.late == nil {
			b.late = map[string][]registry.ValidCredential{}
		}
		b.late[c.UserID] = append(b.late[c.UserID], c)
		return nil
	}
	b.cur = userRecord{UserID: c.UserID, ExternalID: c.ExternalID, Creds: append(b.cur.Creds[:0], c)}
	return nil
}

func (b *builder) flush() error {
	if b.cur.UserID == "" {
		return nil
	}
	var err error
	b.arena, err = appendRecord(b.arena, b.cur, b.rps)
	b.seen[b.cur.UserID] = true
	b.cur.UserID = ""
	return err
}

func (b *builder) finish(cursor int64) (*view, error) {
	if err := b.flush(); err != nil {
		return nil, err
	}
	idx, creds, err := indexArena(b.arena, len(b.seen))
	if err != nil {
		return nil, err
	}
	v := &view{arena: b.arena, index: idx, rps: b.rps.names, cursor: cursor, users: idx.n, creds: creds}
	if len(b.late) == 0 {
		return v, nil
	}
	// Rows of a user that were not contiguous: rebuild those users whole.
	v.overlay = map[string][]byte{}
	for uid, extra := range b.late {
		u, err := decodeRecord(v.record(uid), v.rps)
		if err != nil {
			return nil, err
		}
		u.Creds = append(u.Creds, extra...)
		rec, err := appendRecord(nil, u, b.rps)
		if err != nil {
			return nil, err
		}
		v.overlay[uid] = rec
	}
	v.rps = b.rps.names
	return compact(v)
}

// learned is what the replica remembers from the feed to name the owner of
// a change that names only a key or a credential record.
type learned struct {
	keyOwner map[string]string // key id → user id
	credKey  map[string]string // fido2 credential record id → key id
}

// snapshot file: magic, then fields, then a CRC-32C of everything before.
var snapMagic = []byte("KDVREP1\n")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// snapshotFile is the replica's file in dir.
func snapshotFile(dir string) string { return filepath.Join(dir, "validity.snap") }

// writeSnapshot writes v and l to path atomically (a temporary file in the
// same directory, synced, renamed over path, directory synced), mode 0600.
func writeSnapshot(path string, v *view, l *learned, lastSync int64) error {
	c := v
	if len(v.overlay) > 0 {
		var err error
		if c, err = compact(v); err != nil {
			return err
		}
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".validity-*.tmp")
	if err != nil {
		return fmt.Errorf("writing validity snapshot: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("writing validity snapshot: %w", err)
	}
	h := crc32.New(castagnoli)
	w := io.MultiWriter(f, h)
	var hdr []byte
	hdr = append(hdr, snapMagic...)
	hdr = binary.LittleEndian.AppendUint64(hdr, uint64(c.cursor))
	hdr = binary.LittleEndian.AppendUint64(hdr, uint64(lastSync))
	hdr = binary.LittleEndian.AppendUint64(hdr, uint64(c.users))
	hdr = binary.AppendUvarint(hdr, uint64(len(c.rps)))
	for _, rp := range c.rps {
		hdr = binary.AppendUvarint(hdr, uint64(len(rp)))
		hdr = append(hdr, rp...)
	}
	hdr = binary.LittleEndian.AppendUint64(hdr, uint64(len(c.arena)))
	if _, err := w.Write(hdr); err != nil {
		f.Close()
		return fmt.Errorf("writing validity snapshot: %w", err)
	}
	if _, err := w.Write(c.arena); err != nil {
		f.Close()
		return fmt.Errorf("writing validity snapshot: %w", err)
	}
	tail := appendPairs(nil, l.keyOwner)
	tail = appendPairs(tail, l.credKey)
	if _, err := w.Write(tail); err != nil {
		f.Close()
		return fmt.Errorf("writing validity snapshot: %w", err)
	}
	if _, err := f.Write(binary.LittleEndian.AppendUint32(nil, h.Sum32())); err != nil {
		f.Close()
		return fmt.Errorf("writing validity snapshot: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("syncing validity snapshot: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing validity snapshot: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replacing validity snapshot: %w", err)
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("syncing snapshot directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing snapshot directory: %w", err)
	}
	return nil
}

func appendPairs(b []byte, m map[string]string) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(m[k])))
		b = append(b, m[k]...)
	}
	return b
}

func readPairs(r *reader) map[string]string {
	n := r.uvarint()
	if r.bad || n > uint64(len(r.b)) {
		r.bad = true
		return nil
	}
	m := make(map[string]string, n)
	for i := uint64(0); i < n && !r.bad; i++ {
		k := r.bytes()
		v := r.bytes()
		m[string(k)] = string(v)
	}
	return m
}

// readSnapshot loads a snapshot written by writeSnapshot. The arena is the
// file's own buffer: no copy.
func readSnapshot(path string) (*view, *learned, int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, 0, err
	}
	if len(b) < len(snapMagic)+4 || !bytes.Equal(b[:len(snapMagic)], snapMagic) {
		return nil, nil, 0, fmt.Errorf("%w: not a validity snapshot", errCorrupt)
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return nil, nil, 0, fmt.Errorf("%w: checksum does not match", errCorrupt)
	}
	off := len(snapMagic)
	if len(body) < off+24 {
		return nil, nil, 0, errCorrupt
	}
	cursor := int64(binary.LittleEndian.Uint64(body[off:]))
	lastSync := int64(binary.LittleEndian.Uint64(body[off+8:]))
	users := binary.LittleEndian.Uint64(body[off+16:])
	r := &reader{b: body, off: off + 24}
	nrp := r.uvarint()
	if r.bad || nrp > uint64(len(body)) {
		return nil, nil, 0, errCorrupt
	}
	rps := make([]string, 0, nrp)
	for i := uint64(0); i < nrp && !r.bad; i++ {
		rps = append(rps, string(r.bytes()))
	}
	if r.bad || r.off+8 > len(body) {
		return nil, nil, 0, errCorrupt
	}
	alen := binary.LittleEndian.Uint64(body[r.off:])
	r.off += 8
	if alen > uint64(len(body)-r.off) || users > alen {
		return nil, nil, 0, errCorrupt
	}
	arena := body[r.off : r.off+int(alen) : r.off+int(alen)]
	r.off += int(alen)
	l := &learned{keyOwner: readPairs(r), credKey: readPairs(r)}
	if r.bad {
		return nil, nil, 0, errCorrupt
	}
	idx, creds, err := indexArena(arena, int(users))
	if err != nil {
		return nil, nil, 0, err
	}
	v := &view{arena: arena, index: idx, rps: rps, cursor: cursor, users: idx.n, creds: creds}
	return v, l, lastSync, nil
}
