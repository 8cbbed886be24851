package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/attest"
	"github.com/keydesk/keydesk/registry/audit"
	"github.com/keydesk/keydesk/registry/credential"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

func (s *Server) health(r *request) (int, any, error) {
	return http.StatusOK, map[string]string{"status": "ok"}, nil
}

// whoami says who the caller's token speaks for: its name, role and, for a
// self token, the user it is bound to. A desktop app picks what to show
// from it.
func (s *Server) whoami(r *request) (int, any, error) {
	return http.StatusOK, map[string]string{"name": r.tok.Name, "role": string(r.role), "user_id": r.tok.UserID}, nil
}

type userIn struct {
	ExternalID  string   `json:"external_id"`
	DisplayName string   `json:"display_name"`
	Email       string   `json:"email"`
	Groups      []string `json:"groups"`
	Status      string   `json:"status"`
}

func (u userIn) model() (registry.User, error) {
	st := registry.UserStatus(u.Status)
	switch st {
	case "", registry.UserActive, registry.UserSuspended, registry.UserDeleted:
	default:
		return registry.User{}, registry.Invalid("invalid_status", "unknown user status %q", u.Status)
	}
	return registry.User{ExternalID: u.ExternalID, DisplayName: u.DisplayName, Email: u.Email, Groups: u.Groups, Status: st}, nil
}

func (s *Server) createUser(r *request) (int, any, error) {
	var in userIn
	if err := r.decode(&in); err != nil {
		return 0, nil, err
	}
	u, err := in.model()
	if err != nil {
		return 0, nil, err
	}
	return s.write(r, func(tx *sqlstore.Tx) (int, any, string, error) {
		if err := tx.CreateUser(&u); err != nil {
			return 0, nil, "", err
		}
		return http.StatusCreated, u, etag(u.Version), nil
	})
}

func (s *Server) listUsers(r *request) (int, any, error) {
	limit := 500
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 5000 {
			return 0, nil, fail(http.StatusBadRequest, "bad_limit", "limit must be 1-5000")
		}
		limit = n
	}
	us, err := s.st.ListUsers(r.ctx, r.URL.Query().Get("after"), limit)
	if err != nil {
		return 0, nil, err
	}
	next := ""
	if len(us) == limit {
		next = us[len(us)-1].ID
	}
	return http.StatusOK, map[string]any{"users": us, "next": next}, nil
}

func (s *Server) getUser(r *request) (int, any, error) {
	id := r.PathValue("id")
	if err := r.ownsUser(id); err != nil {
		return 0, nil, err
	}
	u, err := s.st.GetUser(r.ctx, id)
	if err != nil {
		return 0, nil, err
	}
	r.w.Header().Set("ETag", etag(u.Version))
	return http.StatusOK, u, nil
}

func (s *Server) patchUser(r *request) (int, any, error) {
	want, err := r.ifMatch()
	if err != nil {
		return 0, nil, err
	}
	var in struct {
		DisplayName *string   `json:"display_name"`
		Email       *string   `json:"email"`
		Groups      *[]string `json:"groups"`
		Status      *string   `json:"status"`
		// BreakGlassReason lets a status change take the user's last
		// credential out of the validity view (audited user.break_glass).
		BreakGlassReason string `json:"break_glass_reason"`
	}
	if err := r.decode(&in); err != nil {
		return 0, nil, err
	}
	id := r.PathValue("id")
	// A status change applies to the user's self tokens at once on this
	// server (other servers on the database: within the token cache's TTL).
	defer s.tokens.forgetUser(id)
	return s.write(r, func(tx *sqlstore.Tx) (int, any, string, error) {
		u, err := tx.GetUser(id)
		if err != nil {
			return 0, nil, "", err
		}
		if in.DisplayName != nil {
			u.DisplayName = *in.DisplayName
		}
		if in.Email != nil {
			u.Email = *in.Email
		}
		if in.Groups != nil {
			u.Groups = *in.Groups
		}
		if in.Status != nil {
			m, err := userIn{Status: *in.Status}.model()
			if err != nil || *in.Status == "" {
				return 0, nil, "", registry.Invalid("invalid_status", "unknown user status %q", *in.Status)
			}
			u.Status = m.Status
		}
		if err := tx.UpdateUser(&u, want, in.BreakGlassReason); err != nil {
			return 0, nil, "", err
		}
		return http.StatusOK, u, etag(u.Version), nil
	})
}

func (s *Server) userKeys(r *request) (int, any, error) {
	id := r.PathValue("id")
	if err := r.ownsUser(id); err != nil {
		return 0, nil, err
	}
	if _, err := s.st.GetUser(r.ctx, id); err != nil {
		return 0, nil, err
	}
	ks, err := s.st.KeysOfUser(r.ctx, id)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"keys": ks}, nil
}

type keyDetail struct {
	registry.Key
	FIDO2 []registry.FIDOCredential `json:"fido2"`
	PIV   []registry.PIVSlot        `json:"piv"`
}

func (s *Server) getKey(r *request) (int, any, error) {
	k, err := s.ownsKey(r, r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	d := keyDetail{Key: k}
	if d.FIDO2, err = s.st.FIDOCredentials(r.ctx, k.ID); err != nil {
		return 0, nil, err
	}
	if d.PIV, err = s.st.PIVSlots(r.ctx, k.ID); err != nil {
		return 0, nil, err
	}
	r.w.Header().Set("ETag", etag(k.Version))
	return http.StatusOK, d, nil
}

func (s *Server) keyStatus(r *request) (int, any, error) {
	want, err := r.ifMatch()
	if err != nil {
		return 0, nil, err
	}
	var in struct {
		Status           registry.KeyStatus `json:"status"`
		BreakGlassReason string             `json:"break_glass_reason"`
	}
	if err := r.decode(&in); err != nil {
		return 0, nil, err
	}
	if _, err := s.ownsKey(r, r.PathValue("id")); err != nil {
		return 0, nil, err
	}
	// Activating a key that never passed a verification is break glass,
	// and only an admin may break that glass.
	if in.Status == registry.KeyActive && in.BreakGlassReason != "" && r.role != Admin {
		return 0, nil, fail(http.StatusForbidden, "forbidden", "only an admin may activate a key without proof (break_glass_reason)")
	}
	return s.write(r, func(tx *sqlstore.Tx) (int, any, string, error) {
		// Which moves a role may make: registry.KeyTransition.
		by := registry.ByStaff
		if r.role == Self {
			by = registry.BySelf
		}
		k, err := tx.ChangeKeyStatus(by, r.PathValue("id"), want, in.Status, in.BreakGlassReason)
		if err != nil {
			return 0, nil, "", err
		}
		return http.StatusOK, k, etag(k.Version), nil
	})
}

type fidoIn struct {
	CredentialID      []byte `json:"credential_id"`
	PublicKey         []byte `json:"public_key"`
	AAGUID            []byte `json:"aaguid"`
	RPID              string `json:"rp_id"`
	SignCount         uint32 `json:"sign_count"`
	CredProtect       int    `json:"cred_protect"`
	AttestationObject []byte `json:"attestation_object"`
	// The clientDataJSON the attestation signed, required with an
	// attestation object; its SHA-256 may be sent too and must then match.
	AttestationClientDataJSON []byte `json:"attestation_client_data_json"`
	AttestationClientDataHash []byte `json:"attestation_client_data_hash"`
}

func (f fidoIn) model(keyID string) (registry.FIDOCredential, error) {
	if _, err := credential.ParseCOSEKey(f.PublicKey); err != nil {
		return registry.FIDOCredential{}, registry.Invalid("invalid_cose_key", "%v", err)
	}
	if f.CredProtect < 0 || f.CredProtect > 3 {
		return registry.FIDOCredential{}, registry.Invalid("invalid_cred_protect", "cred_protect must be 0-3 (CTAP 2.1 §12.1)")
	}
	// A registration is the attestation object together with the
	// clientDataJSON its signature covers (WebAuthn L2 §5.2.1); the registry
	// keeps both so that the registration can be verified again later, and
	// refuses a new one that brings only the hash.
	if len(f.AttestationObject) > 0 && len(f.AttestationClientDataJSON) == 0 {
		return registry.FIDOCredential{}, registry.Invalid("missing_client_data_json", "attestation_client_data_json is required with attestation_object (WebAuthn L2 §5.2.1); a hash alone cannot be verified again later")
	}
	var cdh []byte
	if len(f.AttestationClientDataJSON) > 0 {
		if err := credential.CheckRegistrationClientData(f.AttestationClientDataJSON); err != nil {
			return registry.FIDOCredential{}, registry.Invalid("invalid_client_data", "%v", err)
		}
		h := sha256.Sum256(f.AttestationClientDataJSON)
		if f.AttestationClientDataHash != nil && !bytes.Equal(f.AttestationClientDataHash, h[:]) {
			return registry.FIDOCredential{}, registry.Invalid("invalid_client_data", "attestation_client_data_hash is not the SHA-256 of attestation_client_data_json")
		}
		cdh = h[:]
	}
	return registry.FIDOCredential{KeyID: keyID, CredentialID: f.CredentialID, PublicKey: f.PublicKey, AAGUID: f.AAGUID, RPID: f.RPID,
		SignCount: f.SignCount, CredProtect: f.CredProtect, AttestationObject: f.AttestationObject,
		AttestationClientDataHash: cdh, AttestationClientDataJSON: f.AttestationClientDataJSON}, nil
}

// attestFIDO sets c's verdict from its attestation, checked against the
// server's roots and those of the FIDO Metadata Service BLOB it holds. The
// attested AAGUID is the credential's (filled in when the client gave
// none), and a model the BLOB marks compromised, revoked or retired is not
// genuine.
func (s *Server) attestFIDO(ctx context.Context, c *registry.FIDOCredential) {
	set, roots, _ := s.mdsSet(ctx) // on a read error, the server's own roots
	res := roots.FIDO(attest.FIDOInput{AttestationObject: c.AttestationObject, ClientDataHash: c.AttestationClientDataHash,
		CredentialID: c.CredentialID, PublicKey: c.PublicKey, RPID: c.RPID}, s.opt.Now())
	switch {
	case len(res.AAGUID) == 0:
	case len(c.AAGUID) == 0:
		c.AAGUID = res.AAGUID
	case !bytes.Equal(c.AAGUID, res.AAGUID):
		res = attest.Result{Verdict: registry.VerdictInvalid, Reason: "aaguid is not the attested one"}
	}
	if e, ok := set.Lookup(c.AAGUID); ok && res.Verdict == registry.VerdictGenuine && e.Undesired() {
		res = attest.Result{Verdict: registry.VerdictInvalid, Reason: fmt.Sprintf("the FIDO Metadata Service marks %s (%s) %s", e.Description, e.AAGUID, e.Status)}
	}
	c.Verdict, c.VerdictReason = res.Verdict, res.Reason
}

// attestPIV sets p's verdict from its attestation certificates, checked
// against the server's roots and the enrolled key's serial.
func (s *Server) attestPIV(p *registry.PIVSlot, serial string) {
	pub, _ := credential.ParsePIVKey(p.PublicKey) // checked by pivIn.model
	res := s.roots.PIV(attest.PIVInput{SlotCert: p.AttestationCert, DeviceCert: p.AttestationIntermediate, SlotKey: pub, Serial: serial}, s.opt.Now())
	p.Verdict, p.VerdictReason = res.Verdict, res.Reason
}

type pivIn struct {
	Slot            string `json:"slot"`
	PublicKey       []byte `json:"public_key"`
	Certificate     []byte `json:"certificate"`
	AttestationCert []byte `json:"attestation_certificate"`
	// AttestationIntermediate is the key's F9 device certificate.
	AttestationIntermediate []byte `json:"attestation_intermediate"`
}

func (p pivIn) model(keyID string) (registry.PIVSlot, error) {
	switch p.Slot {
	case "9a", "9c", "9d", "9e":
	default:
		return registry.PIVSlot{}, registry.Invalid("invalid_slot", "slot must be 9a, 9c, 9d or 9e (NIST SP 800-73-4 Part 1 §3.1)")
	}
	pub, err := credential.ParsePIVKey(p.PublicKey)
	if err != nil {
		return registry.PIVSlot{}, registry.Invalid("invalid_public_key", "%v", err)
	}
	if len(p.Certificate) > 0 {
		if err := credential.CheckCertificate(p.Certificate, pub); err != nil {
			return registry.PIVSlot{}, registry.Invalid("invalid_certificate", "%v", err)
		}
	}
	// Attestation certificates that are not DER at all are bad input; one
	// that parses but does not verify is recorded with verdict "invalid".
	if len(p.AttestationCert) > 0 {
		if err := credential.CheckCertificate(p.AttestationCert, nil); err != nil {
			return registry.PIVSlot{}, registry.Invalid("invalid_attestation_certificate", "%v", err)
		}
	}
	if len(p.AttestationIntermediate) > 0 {
		if err := credential.CheckCertificate(p.AttestationIntermediate, nil); err != nil {
			return registry.PIVSlot{}, registry.Invalid("invalid_attestation_certificate", "attestation_intermediate: %v", err)
		}
	}
	return registry.PIVSlot{KeyID: keyID, Slot: p.Slot, PublicKey: p.PublicKey, Certificate: p.Certificate, AttestationCert: p.AttestationCert, AttestationIntermediate: p.AttestationIntermediate}, nil
}

func (s *Server) addFIDO(r *request) (int, any, error) {
	var in fidoIn
	if err := r.decode(&in); err != nil {
		return 0, nil, err
	}
	c, err := in.model(r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	s.attestFIDO(r.ctx, &c)
	return s.write(r, func(tx *sqlstore.Tx) (int, any, string, error) {
		k, err := tx.GetKey(c.KeyID)
		if err != nil {
			return 0, nil, "", err
		}
		if err := takesCredentials(k); err != nil {
			return 0, nil, "", err
		}
		c.Pending = registry.CredentialPending(k.Status, c.Verdict)
		if err := tx.AddFIDOCredential(&c); err != nil {
			return 0, nil, "", err
		}
		return http.StatusCreated, c, "", nil
	})
}

func (s *Server) addPIV(r *request) (int, any, error) {
	var in pivIn
	if err := r.decode(&in); err != nil {
		return 0, nil, err
	}
	p, err := in.model(r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	return s.write(r, func(tx *sqlstore.Tx) (int, any, string, error) {
		k, err := tx.GetKey(p.KeyID)
		if err != nil {
			return 0, nil, "", err
		}
		if err := takesCredentials(k); err != nil {
			return 0, nil, "", err
		}
		s.attestPIV(&p, k.Serial)
		p.Pending = registry.CredentialPending(k.Status, p.Verdict)
		if err := tx.AddPIVSlot(&p); err != nil {
			return 0, nil, "", err
		}
		return http.StatusCreated, p, "", nil
	})
}

// EnrolmentRequest registers a key with its credentials for a user (found
// by external id, or created) in one change set.
type EnrolmentRequest struct {
	User userIn `json:"user"`
	Key  struct {
		Serial   string             `json:"serial"`
		Model    string             `json:"model"`
		Firmware string             `json:"firmware"`
		Label    string             `json:"label"`
		Role     registry.KeyRole   `json:"role"`
		Status   registry.KeyStatus `json:"status"`
		KeySets  []string           `json:"key_sets"`
	} `json:"key"`
	FIDO2 []fidoIn `json:"fido2"`
	PIV   []pivIn  `json:"piv"`
}

// Enrolment is the result of an enrolment.
type Enrolment struct {
	User  registry.User             `json:"user"`
	Key   registry.Key              `json:"key"`
	FIDO2 []registry.FIDOCredential `json:"fido2"`
	PIV   []registry.PIVSlot        `json:"piv"`
}

func (s *Server) enrol(r *request) (int, any, error) {
	var in EnrolmentRequest
	if err := r.decode(&in); err != nil {
		return 0, nil, err
	}
	// A key becomes active only once it has signed a verification
	// challenge (POST /v1/verifications), never at enrolment.
	if in.Key.Status == registry.KeyActive {
		return 0, nil, registry.Invalid("proof_required", "an enrolled key starts pending and becomes active when it passes a verification")
	}
	if in.Key.Status != "" && in.Key.Status != registry.KeyPending {
		return 0, nil, registry.Invalid("invalid_status", "an enrolled key starts pending")
	}
	out := Enrolment{FIDO2: []registry.FIDOCredential{}, PIV: []registry.PIVSlot{}}
	for i, f := range in.FIDO2 {
		c, err := f.model("")
		if err != nil {
			var ie *registry.InvalidError
			if errors.As(err, &ie) {
				ie.Message = "fido2[" + strconv.Itoa(i) + "]: " + ie.Message
			}
			return 0, nil, err
		}
		s.attestFIDO(r.ctx, &c)
		out.FIDO2 = append(out.FIDO2, c)
	}
	for i, p := range in.PIV {
		c, err := p.model("")
		if err != nil {
			var ie *registry.InvalidError
			if errors.As(err, &ie) {
				ie.Message = "piv[" + strconv.Itoa(i) + "]: " + ie.Message
			}
			return 0, nil, err
		}
		s.attestPIV(&c, in.Key.Serial)
		out.PIV = append(out.PIV, c)
	}
	um, err := in.User.model()
	if err != nil {
		return 0, nil, err
	}
	return s.write(r, func(tx *sqlstore.Tx) (int, any, string, error) {
		if err := tx.Serialize(); err != nil {
			return 0, nil, "", err
		}
		u, err := tx.UserByExternalID(um.ExternalID)
		if errors.Is(err, registry.ErrNotFound) {
			u = um
			err = tx.CreateUser(&u)
		}
		if err != nil {
			return 0, nil, "", err
		}
		k := registry.Key{Serial: in.Key.Serial, Model: in.Key.Model, Firmware: in.Key.Firmware, Label: in.Key.Label,
			OwnerID: u.ID, Role: in.Key.Role, Status: in.Key.Status, KeySets: in.Key.KeySets}
		if err := tx.CreateKey(&k); err != nil {
			return 0, nil, "", err
		}
		for i := range out.FIDO2 {
			out.FIDO2[i].KeyID = k.ID
			if err := tx.AddFIDOCredential(&out.FIDO2[i]); err != nil {
				return 0, nil, "", err
			}
		}
		for i := range out.PIV {
			out.PIV[i].KeyID = k.ID
			if err := tx.AddPIVSlot(&out.PIV[i]); err != nil {
				return 0, nil, "", err
			}
		}
		out.User, out.Key = u, k
		return http.StatusCreated, out, etag(k.Version), nil
	})
}

func (s *Server) putEscrow(r *request) (int, any, error) {
	var want int64
	if r.Header.Get("If-Match") != "" {
		v, err := r.ifMatch()
		if err != nil {
			return 0, nil, err
		}
		want = v
	}
	var in struct {
		Blob []byte `json:"blob"`
	}
	if err := r.decode(&in); err != nil {
		return 0, nil, err
	}
	if len(in.Blob) == 0 {
		return 0, nil, registry.Invalid("missing_field", "blob is required")
	}
	e := registry.EscrowBlob{KeyID: r.PathValue("id"), Kind: r.PathValue("kind"), Blob: in.Blob}
	return s.write(r, func(tx *sqlstore.Tx) (int, any, string, error) {
		if _, err := tx.GetKey(e.KeyID); err != nil {
			return 0, nil, "", err
		}
		if err := tx.PutEscrow(&e, want); err != nil {
			return 0, nil, "", err
		}
		return http.StatusOK, e, etag(e.Version), nil
	})
}

func (s *Server) getEscrow(r *request) (int, any, error) {
	e, err := s.st.GetEscrow(r.ctx, r.PathValue("id"), r.PathValue("kind"))
	if err != nil {
		return 0, nil, err
	}
	r.w.Header().Set("ETag", etag(e.Version))
	return http.StatusOK, e, nil
}

func (s *Server) createAccessPass(r *request) (int, any, error) {
	var in struct {
		Reason   string `json:"reason"`
		Validity string `json:"validity"` // Go duration, at most 24h
	}
	if err := r.decode(&in); err != nil {
		return 0, nil, err
	}
	d, err := time.ParseDuration(in.Validity)
	if err != nil || d <= 0 || d > 24*time.Hour {
		return 0, nil, registry.Invalid("invalid_validity", "validity must be a duration up to 24h, such as \"8h\"")
	}
	if in.Reason == "" {
		return 0, nil, registry.Invalid("missing_field", "reason is required")
	}
	var secret [24]byte
	rand.Read(secret[:])
	pass := base64.RawURLEncoding.EncodeToString(secret[:])
	h := sha256.Sum256([]byte(pass))
	// The pass itself is in the stored idempotent response so a replay
	// returns it again to the same token; it never reaches the audit log.
	return s.write(r, func(tx *sqlstore.Tx) (int, any, string, error) {
		p := registry.TemporaryAccessPass{UserID: r.PathValue("id"), Reason: in.Reason, ExpiresAt: tx.Now().Add(d)}
		u, err := tx.GetUser(p.UserID)
		if err != nil {
			return 0, nil, "", err
		}
		if u.Status != registry.UserActive {
			return 0, nil, "", fmt.Errorf("user %s is %s: %w", u.ID, u.Status, registry.ErrUserNotActive)
		}
		if err := tx.CreateAccessPass(&p, h[:]); err != nil {
			return 0, nil, "", err
		}
		return http.StatusCreated, map[string]any{"access_pass": p, "pass": pass}, "", nil
	})
}

// MaxChallenges is the most challenges one POST /v1/challenges issues.
const MaxChallenges = 100

// createChallenge issues a challenge without writing anything (see
// challenge.go): it needs no Idempotency-Key, and a retry gets a fresh one.
// With count it issues that many for the same credential, each single-use
// with its own nonce and expiry: a client that verifies one credential
// again and again (a monitoring probe, a load test) spends one request on
// many challenges.
func (s *Server) createChallenge(r *request) (int, any, error) {
	var in struct {
		KeyID        string `json:"key_id"`
		Kind         string `json:"kind"`
		CredentialID string `json:"credential_id"`
		Count        *int   `json:"count"`
	}
	if err := r.decode(&in); err != nil {
		return 0, nil, err
	}
	if in.Kind != "fido2" && in.Kind != "piv" {
		return 0, nil, registry.Invalid("invalid_kind", "kind must be fido2 or piv")
	}
	if in.Count != nil && (*in.Count < 1 || *in.Count > MaxChallenges) {
		return 0, nil, registry.Invalid("invalid_count", "count must be between 1 and %d", MaxChallenges)
	}
	if r.role == Self {
		if _, err := s.ownsKey(r, in.KeyID); err != nil {
			return 0, nil, err
		}
	}
	out := map[string]any{}
	switch in.Kind {
	case "fido2":
		c, err := s.st.GetFIDOCredential(r.ctx, in.CredentialID)
		if err != nil && !errors.Is(err, registry.ErrNotFound) {
			return 0, nil, err
		}
		if err != nil || c.KeyID != in.KeyID {
			return 0, nil, registry.Invalid("unknown_credential", "no fido2 credential %s on key %s", in.CredentialID, in.KeyID)
		}
		out["rp_id"], out["fido2_credential_id"] = c.RPID, c.CredentialID
	case "piv":
		p, err := s.st.GetPIVSlot(r.ctx, in.CredentialID)
		if err != nil && !errors.Is(err, registry.ErrNotFound) {
			return 0, nil, err
		}
		if err != nil || p.KeyID != in.KeyID {
			return 0, nil, registry.Invalid("unknown_credential", "no piv slot %s on key %s", in.CredentialID, in.KeyID)
		}
		out["slot"] = p.Slot
	}
	key, err := s.challengeKey(r.ctx)
	if err != nil {
		return 0, nil, err
	}
	n := 1
	if in.Count != nil {
		n = *in.Count
	}
	exp := s.opt.Now().UTC().Add(s.opt.ChallengeTTL).Truncate(time.Microsecond)
	nonces := make([]byte, 32*n)
	rand.Read(nonces)
	cs := make([]registry.Challenge, n)
	for i := range cs {
		c := registry.Challenge{KeyID: in.KeyID, Kind: in.Kind, CredentialID: in.CredentialID, Nonce: nonces[32*i : 32*(i+1) : 32*(i+1)], ExpiresAt: exp}
		c.ID = sealChallenge(key, c)
		cs[i] = c
	}
	out["challenge"] = cs[0]
	if in.Count != nil {
		out["challenges"] = cs
	}
	return http.StatusCreated, out, nil
}

func (s *Server) verify(r *request) (int, any, error) {
	var in struct {
		ChallengeID string                `json:"challenge_id"`
		FIDO2       *credential.Assertion `json:"fido2"`
		PIV         *struct {
			Signature []byte `json:"signature"`
		} `json:"piv"`
	}
	if err := r.decode(&in); err != nil {
		return 0, nil, err
	}
	key, err := s.challengeKey(r.ctx)
	if err != nil {
		return 0, nil, err
	}
	return s.write(r, func(tx *sqlstore.Tx) (int, any, string, error) {
		c, err := openChallenge(key, in.ChallengeID, tx.Now())
		if err != nil {
			return 0, nil, "", err
		}
		if err := tx.UseChallenge(c); err != nil {
			return 0, nil, "", err
		}
		// A PIV verification reads its key and slot in one query.
		var k registry.Key
		var pivKey []byte
		var pending bool // the credential awaits its first verification
		if c.Kind == "piv" {
			k, pivKey, pending, err = tx.KeyWithPIVKey(c.KeyID, c.CredentialID)
		} else {
			k, err = tx.KeyRow(c.KeyID)
		}
		if err != nil {
			return 0, nil, "", err
		}
		if r.role == Self && k.OwnerID != r.tok.UserID {
			return 0, nil, "", fail(http.StatusForbidden, "forbidden", "a self token may verify only its own keys")
		}
		v := registry.Verification{ChallengeID: c.ID, KeyID: c.KeyID, Kind: c.Kind, CredentialID: c.CredentialID}
		switch c.Kind {
		case "fido2":
			if in.FIDO2 == nil {
				return 0, nil, "", registry.Invalid("missing_field", "fido2 assertion required for this challenge")
			}
			// The stored counter is read with the credential's row locked
			// so two concurrent assertions cannot both pass the
			// regression check.
			cred, err := tx.LockFIDOCredential(c.CredentialID)
			if err != nil {
				return 0, nil, "", err
			}
			pending = cred.Pending
			res, err := credential.VerifyAssertion(cred.PublicKey, cred.RPID, c.Nonce, cred.SignCount, *in.FIDO2)
			if err != nil {
				v.Reason = err.Error()
				break
			}
			v.OK, v.CloneSuspected = true, res.CloneSuspected
			if res.CloneSuspected {
				v.Reason = "signature counter did not increase: possible cloned key"
			}
			if err := tx.UpdateSignCount(cred.ID, res.SignCount, res.CloneSuspected); err != nil {
				return 0, nil, "", err
			}
		case "piv":
			if in.PIV == nil {
				return 0, nil, "", registry.Invalid("missing_field", "piv signature required for this challenge")
			}
			if err := credential.VerifyPIV(pivKey, c.Nonce, in.PIV.Signature); err != nil {
				v.Reason = err.Error()
			} else {
				v.OK = true
			}
		}
		// A verification that changes nothing else is audited by the
		// sequencer after commit (sqlstore/sequencer.go).
		tx.AuditLater()
		if err := tx.RecordVerification(&v); err != nil {
			return 0, nil, "", err
		}
		// A pending key that proves possession becomes active in the same
		// change set as the verification that proved it.
		out := verificationOut{Verification: v, KeyStatus: k.Status}
		// A credential held back from the validity view enters it by
		// passing a verification of its own.
		if v.OK && !v.CloneSuspected && pending {
			if err := tx.ConfirmCredential(c.Kind, c.CredentialID, v.ID); err != nil {
				return 0, nil, "", err
			}
			out.CredentialConfirmed = true
		}
		if v.OK && !v.CloneSuspected && k.Status == registry.KeyPending {
			k, activated, err := tx.ActivateByProof(v.KeyID, v.ID)
			if err != nil {
				return 0, nil, "", err
			}
			out.KeyStatus, out.KeyActivated = k.Status, activated
			if !activated && k.Status == registry.KeyPending {
				// The one reason a pending key that proved possession
				// stays pending.
				out.ActivationRefused = "escrow_missing"
			}
		}
		return http.StatusCreated, out, "", nil
	})
}

// verificationOut is a verification with what it did to its key.
type verificationOut struct {
	registry.Verification
	KeyStatus    registry.KeyStatus `json:"key_status"`
	KeyActivated bool               `json:"key_activated"`
	// CredentialConfirmed: the credential was pending and entered the
	// validity view with this verification.
	CredentialConfirmed bool `json:"credential_confirmed,omitempty"`
	// ActivationRefused says why a pending key that proved possession
	// stayed pending: "escrow_missing" (PIV slots and no escrow).
	ActivationRefused string `json:"activation_refused,omitempty"`
}

// takesCredentials refuses new credentials for a key that is lost, revoked
// or retired: a credential added to such a key could serve as the fresh
// proof its return to active needs.
func takesCredentials(k registry.Key) error {
	if !k.Status.InService() {
		return fmt.Errorf("key %s is %s: %w", k.ID, k.Status, registry.ErrKeyNotInService)
	}
	return nil
}

func (s *Server) changes(r *request) (int, any, error) {
	q := r.URL.Query()
	var after int64
	if a := q.Get("after"); a != "" {
		n, err := strconv.ParseInt(a, 10, 64)
		if err != nil || n < 0 {
			return 0, nil, fail(http.StatusBadRequest, "bad_cursor", "after must be a cursor this API returned")
		}
		after = n
	}
	limit := 1000
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 10000 {
			return 0, nil, fail(http.StatusBadRequest, "bad_limit", "limit must be 1-10000")
		}
		limit = n
	}
	cs, head, err := s.st.Changes(r.ctx, after, limit)
	if err != nil {
		return 0, nil, err
	}
	cursor := after
	if len(cs) > 0 {
		cursor = cs[len(cs)-1].Seq
	}
	return http.StatusOK, map[string]any{"changes": cs, "cursor": strconv.FormatInt(cursor, 10), "head": strconv.FormatInt(head, 10), "more": cursor < head}, nil
}

func (s *Server) validity(r *request) (int, any, error) {
	v, err := s.st.Validity(r.ctx, r.URL.Query().Get("user_id"))
	if err != nil {
		return 0, nil, err
	}
	r.w.Header().Set("ETag", etag(v.Version))
	return http.StatusOK, v, nil
}

// auditVerify is GET /v1/audit/verify: the chain, its checkpoints, the
// registry head row, the witness (the head this process last signed and
// the state dir's witness file) and the pending rows (audit.VerifyLog).
// A failure names the first bad entry (seq) or pending row (pending_id).
func (s *Server) auditVerify(r *request) (int, any, error) {
	// The witnessed heads are read first: a head is witnessed only after
	// its change set commits, so the snapshot read next contains it.
	var heads []audit.Checkpoint
	if w := s.opt.Witness; w != nil {
		var err error
		if heads, err = w.Heads(); err != nil {
			return http.StatusOK, map[string]any{"ok": false, "error": err.Error()}, nil
		}
	}
	l, err := s.st.AuditChain(r.ctx)
	if err != nil {
		return 0, nil, err
	}
	l.Witnesses = heads
	rep, err := audit.VerifyLog(l, s.opt.AuditKey)
	if err != nil {
		out := map[string]any{"ok": false, "error": err.Error()}
		var te *audit.TamperError
		if errors.As(err, &te) {
			if te.Seq != 0 {
				out["seq"] = te.Seq
			}
			if te.Pending != 0 {
				out["pending_id"] = te.Pending
			}
		}
		return http.StatusOK, out, nil
	}
	out := map[string]any{"ok": true, "entries": rep.Entries, "checkpoints": rep.Checkpoints, "pending": rep.Pending}
	if rep.Signed.Seq > 0 {
		out["head"] = audit.Export(rep.Signed, s.opt.AuditKey)
	}
	return http.StatusOK, out, nil
}

func (s *Server) redeemAccessPass(r *request) (int, any, error) {
	var in struct {
		Pass string `json:"pass"`
	}
	if err := r.decode(&in); err != nil {
		return 0, nil, err
	}
	if in.Pass == "" {
		return 0, nil, registry.Invalid("missing_field", "pass is required")
	}
	h := sha256.Sum256([]byte(in.Pass))
	return s.write(r, func(tx *sqlstore.Tx) (int, any, string, error) {
		p, err := tx.RedeemAccessPass(h[:], func(p registry.TemporaryAccessPass) error {
			// A self token redeems only its own user's passes; another
			// user's pass is answered like an unknown one and stays usable.
			if r.role == Self && p.UserID != r.tok.UserID {
				return fmt.Errorf("%w: unknown pass", registry.ErrAccessPass)
			}
			// A pass of a user who was suspended or deleted after it was
			// issued lets nobody in; it stays unredeemed.
			u, err := tx.GetUser(p.UserID)
			if err != nil {
				return err
			}
			if u.Status != registry.UserActive {
				return fmt.Errorf("user %s is %s: %w", u.ID, u.Status, registry.ErrUserNotActive)
			}
			return nil
		})
		if err != nil {
			return 0, nil, "", err
		}
		u, err := tx.GetUser(p.UserID)
		if err != nil {
			return 0, nil, "", err
		}
		return http.StatusOK, map[string]any{"access_pass": p, "user": u}, "", nil
	})
}

func (s *Server) listAccessPasses(r *request) (int, any, error) {
	id := r.PathValue("id")
	if _, err := s.st.GetUser(r.ctx, id); err != nil {
		return 0, nil, err
	}
	ps, err := s.st.AccessPasses(r.ctx, id)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"access_passes": ps}, nil
}

func (s *Server) listTokens(r *request) (int, any, error) {
	ts, err := s.st.Tokens(r.ctx)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"tokens": ts}, nil
}

func (s *Server) revokeToken(r *request) (int, any, error) {
	name := r.PathValue("name")
	if err := r.decode(&struct{}{}); err != nil && len(bytes.TrimSpace(r.body)) > 0 {
		return 0, nil, err
	}
	status, body, err := s.write(r, func(tx *sqlstore.Tx) (int, any, string, error) {
		if err := tx.RevokeToken(name); err != nil {
			return 0, nil, "", err
		}
		return http.StatusOK, map[string]any{"name": name, "revoked": true}, "", nil
	})
	if err == nil {
		s.tokens.forgetName(name)
	}
	return status, body, err
}

func (s *Server) listAudit(r *request) (int, any, error) {
	q := r.URL.Query()
	f := sqlstore.AuditFilter{Actor: q.Get("actor"), Action: q.Get("action"), Limit: 100}
	if a := q.Get("after"); a != "" {
		n, err := strconv.ParseInt(a, 10, 64)
		if err != nil || n < 0 {
			return 0, nil, fail(http.StatusBadRequest, "bad_cursor", "after must be a cursor this API returned")
		}
		f.After = n
	}
	// before pages backwards from the newest entry: before=0 is the
	// head, and next is then the cursor of the following (older) page.
	if b := q.Get("before"); b != "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 0 {
			return 0, nil, fail(http.StatusBadRequest, "bad_cursor", "before must be a cursor this API returned, or 0 for the newest entries")
		}
		if n == 0 {
			n = math.MaxInt64
		}
		f.Before = n
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return 0, nil, fail(http.StatusBadRequest, "bad_limit", "limit must be 1-1000")
		}
		f.Limit = n
	}
	es, err := s.st.AuditEntries(r.ctx, f)
	if err != nil {
		return 0, nil, err
	}
	out := make([]registry.AuditEntry, len(es))
	for i, e := range es {
		out[i] = registry.AuditEntry{Seq: e.Seq, Time: time.Unix(0, e.Time).UTC(), Actor: e.Actor, Action: e.Action, Payload: e.Payload,
			PrevHash: hex.EncodeToString(e.PrevHash), Hash: hex.EncodeToString(e.Hash)}
	}
	next := ""
	if len(es) == f.Limit {
		next = strconv.FormatInt(es[len(es)-1].Seq, 10)
	}
	return http.StatusOK, map[string]any{"entries": out, "next": next}, nil
}

// Coverage says whether a user can lose a key and still sign in: two
// active keys, one primary and one backup.
type Coverage struct {
	UserID     string   `json:"user_id"`
	ActiveKeys int      `json:"active_keys"`
	Primary    []string `json:"primary"` // active primary keys
	Backup     []string `json:"backup"`  // active backup keys
	Covered    bool     `json:"covered"`
	// Missing names what is lacking: "primary", "backup".
	Missing []string `json:"missing"`
}

func (s *Server) coverage(r *request) (int, any, error) {
	id := r.PathValue("id")
	if err := r.ownsUser(id); err != nil {
		return 0, nil, err
	}
	if _, err := s.st.GetUser(r.ctx, id); err != nil {
		return 0, nil, err
	}
	ks, err := s.st.KeysOfUser(r.ctx, id)
	if err != nil {
		return 0, nil, err
	}
	c := Coverage{UserID: id, Primary: []string{}, Backup: []string{}, Missing: []string{}}
	for _, k := range ks {
		if k.Status != registry.KeyActive {
			continue
		}
		c.ActiveKeys++
		if k.Role == registry.RoleBackup {
			c.Backup = append(c.Backup, k.ID)
		} else {
			c.Primary = append(c.Primary, k.ID)
		}
	}
	if len(c.Primary) == 0 {
		c.Missing = append(c.Missing, "primary")
	}
	if len(c.Backup) == 0 {
		c.Missing = append(c.Missing, "backup")
	}
	c.Covered = len(c.Missing) == 0
	return http.StatusOK, c, nil
}
