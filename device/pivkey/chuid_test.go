package pivkey_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/hex"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keydesk/keydesk/device/pivkey"
	"github.com/keydesk/keydesk/device/virtual"
)

// The FASC-N ykman 4.0.9 writes ("Non-Federal Issuer FASC-N
// [9999-9999-999999-0-1-0000000000300001]", ykman/piv.py generate_chuid).
var ykmanFASCN, _ = hex.DecodeString("d4e739da739ced39ce739d836858210842108421c84210c3eb")

func TestNonFederalFASCN(t *testing.T) {
	if got := pivkey.NonFederalFASCN.Bytes(); !bytes.Equal(got, ykmanFASCN) {
		t.Fatalf("FASC-N\n got % x\nwant % x", got, ykmanFASCN)
	}
	if s := pivkey.NonFederalFASCN.String(); s != "9999-9999-999999-0-1-0000000000300001" {
		t.Fatalf("FASC-N text %q", s)
	}
	// One digit changed changes its character and the LRC.
	f := pivkey.NonFederalFASCN
	f.PersonIdentifier = 1234567890
	if b := f.Bytes(); bytes.Equal(b, ykmanFASCN) || len(b) != 25 {
		t.Fatalf("FASC-N with a person identifier: % x", b)
	}
}

func TestNewCHUIDAndCCC(t *testing.T) {
	a, err := pivkey.NewCHUID(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pivkey.NewCHUID(rand.Reader)
	pa, err := pivkey.ParseCHUID(a)
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := pivkey.ParseCHUID(b)
	if !bytes.Equal(pa.FASCN, ykmanFASCN) || pa.Expiration != "20300101" || pa.Signed {
		t.Fatalf("chuid %+v", pa)
	}
	if len(pa.GUID) != 16 || pa.GUID[6]>>4 != 4 || pa.GUID[8]>>6 != 2 || bytes.Equal(pa.GUID, pb.GUID) {
		t.Fatalf("guids % x and % x: want distinct RFC 4122 version 4", pa.GUID, pb.GUID)
	}
	// Layout: 30 FASC-N, 34 GUID, 35 expiry, 3E empty signature, FE empty LRC.
	if !bytes.HasPrefix(a, append([]byte{0x30, 25}, ykmanFASCN...)) || !bytes.HasSuffix(a, []byte("20300101\x3e\x00\xfe\x00")) {
		t.Fatalf("chuid bytes % x", a)
	}
	ccc, err := pivkey.NewCCC(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if len(ccc) != 2+21+3+3+2+3+3+7*2 || !bytes.HasPrefix(ccc, []byte{0xF0, 21, 0xA0, 0x00, 0x00, 0x01, 0x16, 0xFF, 0x02}) {
		t.Fatalf("ccc % x", ccc)
	}
	if _, err := pivkey.ParseCHUID([]byte{0x34, 0x01, 0x00}); err == nil {
		t.Fatal("a chuid without fasc-n parsed")
	}
}

// TestCardIDsOnCertificateAndOpenSC: storing a certificate gives each key a
// CHUID and a CCC of its own, a second certificate leaves them alone, and
// OpenSC's pkcs11-tool then lists the two keys with distinct serials, each
// the last 8 bytes of the key's GUID.
func TestCardIDsOnCertificateAndOpenSC(t *testing.T) {
	ctx := context.Background()
	var guids []string
	for i := range 2 {
		r := plug(t, i, fw57)
		r.virtualOnly(t)
		ids, err := r.card.ReadCardIDs(ctx)
		if err != nil || ids.CHUID != nil || ids.CCC != nil {
			t.Fatalf("factory-fresh key: %+v %v", ids, err)
		}
		if _, err := r.card.RotateManagementKey(ctx, defaults().cb(), pivkey.RotateOptions{Protect: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := r.card.Generate(ctx, defaults().cb(), 0x9A, pivkey.KeySpec{Algorithm: "ECCP256"}); err != nil {
			t.Fatal(err)
		}
		p := defaults()
		if _, err := r.card.SelfSign(ctx, p.cb(), 0x9A, pkix.Name{CommonName: "Ada Lovelace"}, time.Hour); err != nil {
			t.Fatal(err)
		}
		if len(p.asked) != 1 {
			t.Fatalf("self-sign asked %v, want the PIN once", p.asked)
		}
		ids, err = r.card.ReadCardIDs(ctx)
		if err != nil || ids.Parsed == nil || ids.CCC == nil {
			t.Fatalf("after self-sign: %+v %v", ids, err)
		}
		if _, err := r.card.SelfSign(ctx, defaults().cb(), 0x9A, pkix.Name{CommonName: "Ada Lovelace"}, time.Hour); err != nil {
			t.Fatal(err)
		}
		again, err := r.card.ReadCardIDs(ctx)
		if err != nil || !bytes.Equal(again.CHUID, ids.CHUID) || !bytes.Equal(again.CCC, ids.CCC) {
			t.Fatal("a second certificate changed the CHUID or the CCC")
		}
		guids = append(guids, hex.EncodeToString(ids.Parsed.GUID))
	}
	if guids[0] == guids[1] {
		t.Fatal("two keys got the same GUID")
	}

	out := pkcs11Tool(t, "-L")
	serials := regexp.MustCompile(`serial num\s*:\s*(\S+)`).FindAllStringSubmatch(out, -1)
	if len(serials) != 2 {
		t.Fatalf("pkcs11-tool -L lists %d tokens, want 2:\n%s", len(serials), out)
	}
	for i, s := range serials {
		if !strings.HasSuffix(guids[i], strings.ToLower(s[1])) {
			t.Fatalf("token %d serial %s is not its GUID %s:\n%s", i, s[1], guids[i], out)
		}
	}
	if serials[0][1] == serials[1][1] {
		t.Fatalf("both tokens have serial %s:\n%s", serials[0][1], out)
	}
}

// TestWriteCardIDsReplaces: asked to, WriteCardIDs replaces the CHUID (a
// new GUID) and leaves the CCC when told only the CHUID; ykman reads both.
func TestWriteCardIDsReplaces(t *testing.T) {
	r := plug(t, 0, virtual.Version{Major: 5, Minor: 4, Patch: 3})
	r.virtualOnly(t)
	ctx := context.Background()
	if err := r.card.EnsureCardIDs(ctx, defaults().cb()); err != nil {
		t.Fatal(err)
	}
	before, err := r.card.ReadCardIDs(ctx)
	if err != nil || before.Parsed == nil || before.CCC == nil {
		t.Fatalf("%+v %v", before, err)
	}
	if err := r.card.WriteCardIDs(ctx, defaults().cb(), pivkey.CHUID); err != nil {
		t.Fatal(err)
	}
	after, err := r.card.ReadCardIDs(ctx)
	if err != nil || after.Parsed == nil || bytes.Equal(after.Parsed.GUID, before.Parsed.GUID) || !bytes.Equal(after.CCC, before.CCC) {
		t.Fatalf("after replacing the CHUID: %+v %v", after, err)
	}
	if err := r.card.WriteCardIDs(ctx, defaults().cb(), "fingerprints"); err == nil {
		t.Fatal("an unknown object accepted")
	}
	cmd := exec.Command("ykman", "-r", r.card.Reader, "piv", "info")
	cmd.Env = append(os.Environ(), daemon.Env())
	info, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ykman piv info: %v\n%s", err, info)
	}
	for _, want := range []string{"CHUID:\t" + hex.EncodeToString(after.CHUID), "CCC: \t" + hex.EncodeToString(after.CCC)} {
		if !strings.Contains(string(info), want) {
			t.Fatalf("ykman piv info lacks %q:\n%s", want, info)
		}
	}
}

// pkcs11Tool runs OpenSC's pkcs11-tool against the private pcscd.
func pkcs11Tool(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("pkcs11-tool"); err != nil {
		t.Fatal("pkcs11-tool is not installed (packaging/install-deps.sh installs opensc)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "pkcs11-tool", append([]string{"--module", "opensc-pkcs11.so"}, args...)...)
	cmd.Env = append(os.Environ(), daemon.Env())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
