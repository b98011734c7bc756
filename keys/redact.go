package keys

import (
	"net/url"
	"strings"
)

// sensitiveParams are URI parameter names whose values are secrets, such as
// the RFC 7512 "pin-value" of a pkcs11: URI.
var sensitiveParams = map[string]bool{
	"pin-value":     true,
	"pin":           true,
	"password":      true,
	"passphrase":    true,
	"secret":        true,
	"secret-key":    true,
	"secret_key":    true,
	"access-token":  true,
	"access_token":  true,
	"client-secret": true,
	"client_secret": true,
}

// RedactURI returns uri with every secret it may carry replaced by
// "REDACTED": the password of its user info and the values of parameters
// such as pin-value or password, whether they follow '?', '&' or ';'. Use it
// whenever a master-key URI goes into a log line or an error message.
//
// The two redactions can read a malformed URI differently: in "//:&pin=@h"
// the parameter value "@h" is also the end of a user info whose password is
// "&pin=". Both orders are tried, and when they disagree the whole URI after
// its scheme is redacted, so that neither reading's secret gets through.
func RedactURI(uri string) string {
	a := redactParams(redactUserInfo(uri))
	b := redactUserInfo(redactParams(uri))
	if a == b {
		return a
	}
	if u, err := url.Parse(uri); err == nil && u.Scheme != "" {
		return u.Scheme + ":REDACTED"
	}
	return "REDACTED"
}

// redactUserInfo replaces the password of uri's user info, if it has one.
func redactUserInfo(uri string) string {
	if u, err := url.Parse(uri); err == nil && u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "REDACTED")
			return u.String()
		}
	}
	return uri
}

// redactParams redacts the value of every sensitive "name=value" part of
// uri, parts being separated by '?', '&' or ';'.
func redactParams(uri string) string {
	var b strings.Builder
	start := 0
	for i := 0; i <= len(uri); i++ {
		if i < len(uri) && !strings.ContainsRune("?&;", rune(uri[i])) {
			continue
		}
		b.WriteString(redactParam(uri[start:i]))
		if i < len(uri) {
			b.WriteByte(uri[i])
		}
		start = i + 1
	}
	return b.String()
}

// redactParam redacts the value of one "name=value" part if name is
// sensitive. A part without '=' is returned unchanged.
func redactParam(part string) string {
	name, _, ok := strings.Cut(part, "=")
	if !ok {
		return part
	}
	key := name
	if i := strings.LastIndexAny(key, ":/"); i >= 0 {
		key = key[i+1:] // "pkcs11:pin-value=..." has the scheme before the name
	}
	if n, err := url.QueryUnescape(key); err == nil {
		key = n
	}
	if sensitiveParams[strings.ToLower(key)] {
		return name + "=REDACTED"
	}
	return part
}
