//go:build cgo && unix

package pkcs11

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"unsafe"

	p11 "github.com/miekg/pkcs11"

	"github.com/cofferfs/coffer/keys/masterkey"
)

// Errors a caller may act on.
var (
	// ErrModule reports a PKCS#11 module that cannot be loaded.
	ErrModule = errors.New("failed to load PKCS#11 module")
	// ErrNoToken reports that no token matches the URI.
	ErrNoToken = errors.New("PKCS#11 token not found")
	// ErrNoKey reports that the token holds no matching secret key.
	ErrNoKey = errors.New("PKCS#11 key not found")
	// ErrKeyExists reports "keys create" on a label the token already has.
	ErrKeyExists = errors.New("PKCS#11 object exists")
	// ErrWrongPIN reports a PIN the token refused.
	ErrWrongPIN = errors.New("wrong PIN")
	// ErrUnsafeKey reports a key that may leave the token (extractable or
	// not sensitive) or is not an AES-256 key for encryption.
	ErrUnsafeKey = errors.New("PKCS#11 key is not fit to be a master key")
)

// module is one loaded and initialised PKCS#11 library. A library may be
// initialised once per process, so modules are shared and counted: the last
// release finalises it, which also ends every session and login.
type module struct {
	path string
	ctx  *p11.Ctx
	refs int
}

var modules struct {
	sync.Mutex
	m map[string]*module
}

// openModule loads and initialises the library at path, or returns the one
// already loaded. The library must pass checkModule first, with backing as
// the volume's backing directory ("" for none): loading runs its code.
func openModule(named, backing string) (*module, error) {
	path, err := checkModule(named, backing)
	if err != nil {
		return nil, err
	}
	modules.Lock()
	defer modules.Unlock()
	if m, ok := modules.m[path]; ok {
		m.refs++
		return m, nil
	}

	ctx := p11.New(path)
	if ctx == nil {
		return nil, fmt.Errorf("%w %s: not a loadable PKCS#11 library", ErrModule, named)
	}
	if err := ctx.Initialize(); err != nil && !isRV(err, p11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		ctx.Destroy()
		return nil, fmt.Errorf("%w %s: %w", ErrModule, named, err)
	}
	m := &module{path: path, ctx: ctx, refs: 1}
	if modules.m == nil {
		modules.m = make(map[string]*module)
	}
	modules.m[path] = m
	return m, nil
}

// release drops one reference; the last one finalises the library.
func (m *module) release() {
	modules.Lock()
	defer modules.Unlock()
	m.refs--
	if m.refs > 0 {
		return
	}
	delete(modules.m, m.path)
	_ = m.ctx.Finalize()
	m.ctx.Destroy()
}

// isRV reports whether err is the PKCS#11 return value rv.
func isRV(err error, rv uint) bool {
	var e p11.Error
	return errors.As(err, &e) && uint(e) == rv
}

// findSlot returns the slot holding the one token that matches u, and its
// token info.
func (m *module) findSlot(u *URI) (uint, p11.TokenInfo, error) {
	slots, err := m.ctx.GetSlotList(true)
	if err != nil {
		return 0, p11.TokenInfo{}, fmt.Errorf("failed to list the slots of %s: %w", m.path, err)
	}
	var labels []string
	var found []uint
	var info p11.TokenInfo
	for _, s := range slots {
		ti, err := m.ctx.GetTokenInfo(s)
		if err != nil || ti.Flags&p11.CKF_TOKEN_INITIALIZED == 0 {
			continue
		}
		labels = append(labels, fmt.Sprintf("%q", ti.Label))
		if ti.Label != u.Token || (u.HasSlot && s != u.SlotID) ||
			!matches(u.Manufacturer, ti.ManufacturerID) || !matches(u.Model, ti.Model) ||
			!matches(u.Serial, ti.SerialNumber) {
			continue
		}
		found = append(found, s)
		info = ti
	}

	sort.Strings(labels)
	switch {
	case len(found) == 0 && len(labels) == 0:
		return 0, info, fmt.Errorf("%w: no token labelled %q: module %s has no initialised token",
			ErrNoToken, u.Token, m.path)
	case len(found) == 0:
		return 0, info, fmt.Errorf("%w: no token labelled %q matches the URI (tokens: %s)",
			ErrNoToken, u.Token, strings.Join(labels, ", "))
	case len(found) > 1:
		return 0, info, fmt.Errorf("%w: %d tokens match label %q: add serial= to the URI",
			ErrNoToken, len(found), u.Token)
	}
	return found[0], info, nil
}

// matches compares an optional URI attribute with a blank-padded token
// info field.
func matches(want, have string) bool {
	return want == "" || want == strings.TrimRight(have, " ")
}

// session is a logged-in session on the token of a URI, holding a module
// reference.
type session struct {
	mod *module
	sh  p11.SessionHandle
	u   *URI
}

// openSession loads the module, finds the token, opens a session (read-write
// when rw) and logs in with the PIN from u, opts.PINFile or opts.PIN.
func openSession(ctx context.Context, u *URI, opts masterkey.Options, rw bool) (*session, error) {
	mod, err := openModule(u.Module, opts.Backing)
	if err != nil {
		return nil, err
	}
	s, err := startSession(ctx, mod, u, opts, rw)
	if err != nil {
		mod.release()
		return nil, err
	}
	return s, nil
}

func startSession(ctx context.Context, mod *module, u *URI, opts masterkey.Options,
	rw bool) (*session, error) {
	slot, info, err := mod.findSlot(u)
	if err != nil {
		return nil, err
	}
	flags := uint(p11.CKF_SERIAL_SESSION)
	if rw {
		flags |= p11.CKF_RW_SESSION
	}
	sh, err := mod.ctx.OpenSession(slot, flags)
	if err != nil {
		return nil, fmt.Errorf("failed to open a session on token %q: %w", u.Token, err)
	}
	s := &session{mod: mod, sh: sh, u: u}
	if info.Flags&p11.CKF_LOGIN_REQUIRED == 0 {
		return s, nil
	}
	if err := s.login(ctx, opts); err != nil {
		_ = mod.ctx.CloseSession(sh)
		return nil, err
	}
	return s, nil
}

// login logs the user in. A login that another session of this process made
// already is fine: login state belongs to the application, not the session.
func (s *session) login(ctx context.Context, opts masterkey.Options) error {
	if err := checkPINSource(s.u.PINSource, opts.Backing); err != nil {
		return err
	}
	pin, err := getPIN(ctx, s.u, opts)
	if err != nil {
		return err
	}
	defer pin.Wipe()

	// The binding takes a string: view the PIN's protected bytes as one
	// rather than copying them to a string that could never be wiped.
	b := pin.InsecureBytes()
	err = s.mod.ctx.Login(s.sh, p11.CKU_USER, unsafe.String(&b[0], len(b)))
	switch {
	case err == nil || isRV(err, p11.CKR_USER_ALREADY_LOGGED_IN):
		return nil
	case isRV(err, p11.CKR_PIN_INCORRECT) || isRV(err, p11.CKR_PIN_LEN_RANGE):
		return fmt.Errorf("%w for token %q (repeated failures may lock the token)",
			ErrWrongPIN, s.u.Token)
	case isRV(err, p11.CKR_PIN_LOCKED):
		return fmt.Errorf("token %q is locked after too many wrong PINs: its security "+
			"officer must reset the user PIN", s.u.Token)
	case isRV(err, p11.CKR_USER_PIN_NOT_INITIALIZED):
		return fmt.Errorf("token %q has no user PIN: set one first (pkcs11-tool --init-pin)",
			s.u.Token)
	}
	return fmt.Errorf("failed to log in to token %q: %w", s.u.Token, err)
}

// close ends the session and drops the module reference. Closing the last
// session of the token logs the user out.
func (s *session) close() {
	_ = s.mod.ctx.CloseSession(s.sh)
	s.mod.release()
}

// find returns up to max handles of objects matching tmpl.
func (s *session) find(tmpl []*p11.Attribute, max int) ([]p11.ObjectHandle, error) {
	if err := s.mod.ctx.FindObjectsInit(s.sh, tmpl); err != nil {
		return nil, fmt.Errorf("failed to search token %q: %w", s.u.Token, err)
	}
	objs, _, err := s.mod.ctx.FindObjects(s.sh, max)
	if ferr := s.mod.ctx.FindObjectsFinal(s.sh); err == nil && ferr != nil {
		err = ferr
	}
	if err != nil {
		return nil, fmt.Errorf("failed to search token %q: %w", s.u.Token, err)
	}
	return objs, nil
}

// keyTemplate returns the search template for the key of s.u.
func (s *session) keyTemplate() []*p11.Attribute {
	t := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_LABEL, s.u.Object),
	}
	if s.u.ID != nil {
		t = append(t, p11.NewAttribute(p11.CKA_ID, s.u.ID))
	}
	return t
}

// findKey returns the one secret key that matches the URI, after checking
// that it is an AES-256 key that cannot leave the token.
func (s *session) findKey() (p11.ObjectHandle, error) {
	objs, err := s.find(s.keyTemplate(), 2)
	if err != nil {
		return 0, err
	}
	switch len(objs) {
	case 0:
		return 0, fmt.Errorf("%w: token %q has no secret key labelled %q%s; create one with "+
			"coffer keys create", ErrNoKey, s.u.Token, s.u.Object, s.idNote())
	case 2:
		return 0, fmt.Errorf("%w: token %q has several secret keys labelled %q: add id= "+
			"to the URI", ErrNoKey, s.u.Token, s.u.Object)
	}
	if err := s.checkKey(objs[0]); err != nil {
		return 0, err
	}
	return objs[0], nil
}

func (s *session) idNote() string {
	if s.u.ID == nil {
		return ""
	}
	return " with the URI's id"
}

// checkKey refuses a key that is not AES-256, that can be read out of the
// token, or that may not encrypt and decrypt.
func (s *session) checkKey(h p11.ObjectHandle) error {
	attrs, err := s.mod.ctx.GetAttributeValue(s.sh, h, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_KEY_TYPE, nil),
		p11.NewAttribute(p11.CKA_VALUE_LEN, nil),
		p11.NewAttribute(p11.CKA_SENSITIVE, nil),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, nil),
		p11.NewAttribute(p11.CKA_ENCRYPT, nil),
		p11.NewAttribute(p11.CKA_DECRYPT, nil),
	})
	if err != nil {
		return fmt.Errorf("failed to read the attributes of key %q: %w", s.u.Object, err)
	}
	v := map[uint][]byte{}
	for _, a := range attrs {
		v[a.Type] = a.Value
	}
	name := fmt.Sprintf("key %q on token %q", s.u.Object, s.u.Token)
	switch {
	case ulong(v[p11.CKA_KEY_TYPE]) != p11.CKK_AES || ulong(v[p11.CKA_VALUE_LEN]) != 32:
		return fmt.Errorf("%w: %s is not an AES-256 key", ErrUnsafeKey, name)
	case !boolean(v[p11.CKA_SENSITIVE]) || boolean(v[p11.CKA_EXTRACTABLE]):
		return fmt.Errorf("%w: %s can be read out of the token (it must be sensitive and "+
			"not extractable)", ErrUnsafeKey, name)
	case !boolean(v[p11.CKA_ENCRYPT]) || !boolean(v[p11.CKA_DECRYPT]):
		return fmt.Errorf("%w: %s may not encrypt and decrypt", ErrUnsafeKey, name)
	}
	return nil
}

// ulong decodes a CK_ULONG attribute value, in the machine's byte order.
func ulong(b []byte) uint {
	switch len(b) {
	case 8:
		return uint(binary.NativeEndian.Uint64(b))
	case 4:
		return uint(binary.NativeEndian.Uint32(b))
	}
	return ^uint(0)
}

// boolean decodes a CK_BBOOL attribute value.
func boolean(b []byte) bool { return len(b) == 1 && b[0] != 0 }

// createKey generates the AES-256 master key inside the token: a token
// object, private, sensitive, never extractable, for encryption only. It
// refuses a label that any object of the token carries already.
func (s *session) createKey() error {
	t := []*p11.Attribute{p11.NewAttribute(p11.CKA_LABEL, s.u.Object)}
	objs, err := s.find(t, 1)
	if err != nil {
		return err
	}
	if len(objs) > 0 {
		return fmt.Errorf("%w: token %q already holds an object labelled %q; coffer never "+
			"replaces a key: choose another object label", ErrKeyExists, s.u.Token, s.u.Object)
	}

	tmpl := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_AES),
		p11.NewAttribute(p11.CKA_VALUE_LEN, 32),
		p11.NewAttribute(p11.CKA_LABEL, s.u.Object),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_SENSITIVE, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
		p11.NewAttribute(p11.CKA_ENCRYPT, true),
		p11.NewAttribute(p11.CKA_DECRYPT, true),
		p11.NewAttribute(p11.CKA_WRAP, false),
		p11.NewAttribute(p11.CKA_UNWRAP, false),
		p11.NewAttribute(p11.CKA_SIGN, false),
		p11.NewAttribute(p11.CKA_VERIFY, false),
		p11.NewAttribute(p11.CKA_DERIVE, false),
	}
	if s.u.ID != nil {
		tmpl = append(tmpl, p11.NewAttribute(p11.CKA_ID, s.u.ID))
	}
	mech := []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_KEY_GEN, nil)}
	if _, err := s.mod.ctx.GenerateKey(s.sh, mech, tmpl); err != nil {
		return fmt.Errorf("failed to generate key %q in token %q: %w", s.u.Object, s.u.Token, err)
	}
	return nil
}
