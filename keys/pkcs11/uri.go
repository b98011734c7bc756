package pkcs11

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/cofferfs/coffer/keys/masterkey"
)

// Scheme is the URI scheme of PKCS#11 master keys (RFC 7512).
const Scheme = "pkcs11"

// Kind is the master-key kind recorded in the config.
const Kind = "pkcs11"

// DefaultModule is the PKCS#11 module used when the URI has no module-path:
// SoftHSM2 as Debian installs it. The canonical URI always names the module,
// so a volume keeps using the module it was created with.
const DefaultModule = "/usr/lib/softhsm/libsofthsm2.so"

// uriErrorf returns an error wrapping masterkey.ErrMalformed for a pkcs11:
// URI that breaks RFC 7512 or the rules of this kind. Messages never quote
// attribute values, which could hold a PIN.
func uriErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: pkcs11: %s", masterkey.ErrMalformed, fmt.Sprintf(format, args...))
}

// URI is a parsed pkcs11: URI naming an AES secret key on a token. It holds
// no secret: the PIN is read from PINSource, never from the URI itself.
type URI struct {
	// Token is the label of the token (CKA token label). Required.
	Token string
	// Manufacturer, Model and Serial narrow the token further; empty means
	// any.
	Manufacturer, Model, Serial string
	// SlotID, when HasSlot, restricts the search to that slot.
	SlotID  uint
	HasSlot bool
	// Object is the label of the key (CKA_LABEL). Required.
	Object string
	// ID, when not nil, is the key's CKA_ID.
	ID []byte
	// Module is the absolute path of the PKCS#11 module.
	Module string
	// PINSource is the absolute path of a file holding the PIN, or "".
	PINSource string
}

// pathAttrs are the RFC 7512 path attributes this kind understands. The
// library-* and slot-description/manufacturer attributes select among
// modules and slots, which a module-path and a token label already do.
var pathAttrs = map[string]bool{
	"token": true, "manufacturer": true, "model": true, "serial": true,
	"slot-id": true, "object": true, "id": true, "type": true,
}

// rfcPathAttrs are the other path attributes RFC 7512 defines, refused with
// a message that says so rather than "unknown".
var rfcPathAttrs = map[string]bool{
	"library-manufacturer": true, "library-description": true, "library-version": true,
	"slot-description": true, "slot-manufacturer": true,
}

// ParseURI parses a pkcs11: URI. Attribute names are matched without regard
// to case; values are percent-decoded. It refuses pin-value (a PIN must not
// be stored in the config or typed on a command line), module-name, unknown
// attributes, repeated attributes and a URI without token or object.
func ParseURI(s string) (*URI, error) {
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || !strings.EqualFold(scheme, Scheme) {
		return nil, uriErrorf("must start with pkcs11:")
	}
	if strings.Contains(rest, "#") {
		return nil, uriErrorf("a fragment (#) is not allowed; write %%23 for a literal #")
	}
	path, query, _ := strings.Cut(rest, "?")

	u := &URI{Module: DefaultModule}
	if err := u.parsePath(path); err != nil {
		return nil, err
	}
	if err := u.parseQuery(query); err != nil {
		return nil, err
	}
	switch {
	case u.Token == "":
		return nil, uriErrorf("token=LABEL is required")
	case u.Object == "":
		return nil, uriErrorf("object=LABEL is required")
	}
	return u, nil
}

// parsePath parses the ';'-separated path attributes.
func (u *URI) parsePath(path string) error {
	seen := map[string]bool{}
	for _, part := range split(path, ';') {
		name, raw, err := attr(part, seen, isPathChar)
		if err != nil {
			return err
		}
		if !pathAttrs[name] {
			if rfcPathAttrs[name] {
				return uriErrorf("attribute %q is not supported; name the module with "+
					"module-path and the token with token", name)
			}
			return uriErrorf("unknown attribute %q (known: token, manufacturer, model, "+
				"serial, slot-id, object, id, type)", name)
		}
		if err := u.setPath(name, raw); err != nil {
			return err
		}
	}
	return nil
}

// setPath stores one decoded path attribute.
func (u *URI) setPath(name, raw string) error {
	if name == "id" {
		id, err := decode(raw)
		if err != nil {
			return err
		}
		if len(id) == 0 {
			return uriErrorf("id must not be empty")
		}
		u.ID = []byte(id)
		return nil
	}
	v, err := decodeText(name, raw)
	if err != nil {
		return err
	}
	switch name {
	case "token":
		if len(v) > 32 {
			return uriErrorf("token label is %d bytes; PKCS#11 labels have at most 32", len(v))
		}
		u.Token = v
	case "manufacturer":
		u.Manufacturer = v
	case "model":
		u.Model = v
	case "serial":
		u.Serial = v
	case "object":
		u.Object = v
	case "slot-id":
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return uriErrorf("slot-id %q is not a decimal number", v)
		}
		u.SlotID, u.HasSlot = uint(n), true
	case "type":
		if v != "secret-key" {
			return uriErrorf("type=%q: the master key is an AES secret key (type=secret-key)", v)
		}
	}
	return nil
}

// parseQuery parses the '&'-separated query attributes.
func (u *URI) parseQuery(query string) error {
	seen := map[string]bool{}
	for _, part := range split(query, '&') {
		name, raw, err := attr(part, seen, isQueryChar)
		if err != nil {
			return err
		}
		switch name {
		case "module-name":
			return uriErrorf("module-name is not supported; give the module's file as " +
				"module-path=/ABSOLUTE/PATH")
		case "module-path":
			err = u.setModule(raw)
		case "pin-source":
			err = u.setPINSource(raw)
		default:
			err = uriErrorf("unknown query attribute %q (known: module-path, pin-source)", name)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (u *URI) setModule(raw string) error {
	v, err := decodeText("module-path", raw)
	if err != nil {
		return err
	}
	if !filepath.IsAbs(v) || filepath.Clean(v) != v {
		return uriErrorf("module-path must be a clean absolute path")
	}
	u.Module = v
	return nil
}

// setPINSource accepts file:/PATH, file:///PATH or an absolute path.
func (u *URI) setPINSource(raw string) error {
	v, err := decodeText("pin-source", raw)
	if err != nil {
		return err
	}
	p := v
	switch {
	case strings.HasPrefix(v, "file://"):
		p = strings.TrimPrefix(v, "file://")
	case strings.HasPrefix(v, "file:"):
		p = strings.TrimPrefix(v, "file:")
	case strings.HasPrefix(v, "|"):
		return uriErrorf("a pin-source that runs a command is not supported; use " +
			"pin-source=file:/PATH")
	}
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return uriErrorf("pin-source must be file:/ABSOLUTE/PATH")
	}
	u.PINSource = p
	return nil
}

// split splits s at sep; an empty s has no parts.
func split(s string, sep byte) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, string(sep))
}

// attr splits one "name=value" part, checks its characters and records the
// name in seen. It returns the lower-case name and the raw value.
func attr(part string, seen map[string]bool, ok func(byte) bool) (string, string, error) {
	name, raw, found := strings.Cut(part, "=")
	name = strings.ToLower(name)
	switch {
	case !found || name == "":
		return "", "", uriErrorf("%q is not an attribute=value pair", safeName(part))
	case name == "pin-value":
		return "", "", uriErrorf("pin-value is refused: a PIN in the URI would be stored in " +
			"the volume config and seen on command lines; use pin-source=file:/PATH or --pin-file")
	case seen[name]:
		return "", "", uriErrorf("attribute %q appears twice", name)
	}
	seen[name] = true
	for i := 0; i < len(raw); i++ {
		if !ok(raw[i]) && raw[i] != '%' {
			return "", "", uriErrorf("character %q in %q must be percent-encoded", raw[i], name)
		}
	}
	return name, raw, nil
}

// safeName returns the part of s before any '=', so that an error never
// echoes a value that could be a PIN.
func safeName(s string) string {
	name, _, _ := strings.Cut(s, "=")
	return name
}

// decode percent-decodes s.
func decode(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) || unhex(s[i+1]) < 0 || unhex(s[i+2]) < 0 {
			return "", uriErrorf("bad percent-encoding %q", s[i:min(i+3, len(s))])
		}
		b.WriteByte(byte(unhex(s[i+1])<<4 | unhex(s[i+2])))
		i += 2
	}
	return b.String(), nil
}

// decodeText percent-decodes the value of a textual attribute, which must
// be non-empty UTF-8 without NUL bytes.
func decodeText(name, raw string) (string, error) {
	v, err := decode(raw)
	switch {
	case err != nil:
		return "", err
	case v == "":
		return "", uriErrorf("%s must not be empty", name)
	case !utf8.ValidString(v):
		return "", uriErrorf("%s is not valid UTF-8", name)
	case strings.ContainsRune(v, 0):
		return "", uriErrorf("%s holds a NUL byte", name)
	}
	return v, nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c|0x20 >= 'a' && c|0x20 <= 'f':
		return int(c|0x20-'a') + 10
	}
	return -1
}

// isUnreserved reports RFC 3986 unreserved characters.
func isUnreserved(c byte) bool {
	return c|0x20 >= 'a' && c|0x20 <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0
}

// resAvail are the reserved characters RFC 7512 lets stand unencoded in
// both path and query values (pk11-res-avail).
const resAvail = ":[]@!$'()*+,="

// isPathChar reports characters allowed unencoded in a path value.
func isPathChar(c byte) bool {
	return isUnreserved(c) || strings.IndexByte(resAvail+"&", c) >= 0
}

// isQueryChar reports characters allowed unencoded in a query value.
func isQueryChar(c byte) bool {
	return isUnreserved(c) || strings.IndexByte(resAvail+"/?|", c) >= 0
}

// String returns the canonical URI: attributes in a fixed order, the module
// always named, the id fully percent-encoded, text values encoded where RFC
// 7512 requires and nowhere else.
func (u *URI) String() string {
	var path []string
	add := func(name, v string) {
		if v != "" {
			path = append(path, name+"="+encode(v, isCanonPathChar))
		}
	}
	add("token", u.Token)
	add("manufacturer", u.Manufacturer)
	add("model", u.Model)
	add("serial", u.Serial)
	if u.HasSlot {
		add("slot-id", strconv.FormatUint(uint64(u.SlotID), 10))
	}
	add("object", u.Object)
	if u.ID != nil {
		path = append(path, "id="+encode(string(u.ID), func(byte) bool { return false }))
	}

	q := "module-path=" + encode(u.Module, isCanonQueryChar)
	if u.PINSource != "" {
		q += "&pin-source=" + encode("file:"+u.PINSource, isCanonQueryChar)
	}
	return Scheme + ":" + strings.Join(path, ";") + "?" + q
}

// isCanonPathChar and isCanonQueryChar are the characters the canonical
// form leaves unencoded: fewer than RFC 7512 allows, so that a canonical
// URI survives shells and the redaction of "name=value" parameters.
func isCanonPathChar(c byte) bool { return isUnreserved(c) || strings.IndexByte(":@,+", c) >= 0 }

func isCanonQueryChar(c byte) bool { return isCanonPathChar(c) || c == '/' }

// encode percent-encodes the bytes of s that keep does not accept.
func encode(s string, keep func(byte) bool) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if keep(s[i]) {
			b.WriteByte(s[i])
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[s[i]>>4])
		b.WriteByte(hex[s[i]&15])
	}
	return b.String()
}

// Canonical parses s and returns its canonical form, for masterkey.Kind.
func Canonical(s string) (string, error) {
	u, err := ParseURI(s)
	if err != nil {
		return "", err
	}
	return u.String(), nil
}
