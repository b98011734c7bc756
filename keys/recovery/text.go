package recovery

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"strings"
)

// The printed form of a private recovery key. 35 bytes
//
//	offset size  field
//	0      1     version, 0x01
//	1      32    X25519 private key
//	33     2     first 2 bytes of SHA-256(textTag || bytes 0..32)
//
// are written in Crockford's base32 (280 bits, 56 characters), cut into 14
// groups of 4 characters, and each group gets a fifth, check character:
//
//	check = (1*c0 + 3*c1 + 5*c2 + 7*c3 + 11*(group+1)) mod 32
//
// The weights are odd, hence invertible mod 32, so any single mistyped
// character in a group changes its check and the group is named in the
// error; the group term catches groups typed in the wrong order. The
// trailing SHA-256 bytes catch what the group checks let through. Groups
// are printed joined by '-', seven to a line; reading ignores case, spaces,
// line breaks and dashes, and takes O for 0 and I or L for 1.
const (
	textVersion = 0x01
	rawSize     = 1 + keySize + 2
	groups      = 14
	groupData   = 4
	groupSize   = groupData + 1
	textChars   = groups * groupSize
)

const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

const textTag = "coffer-recovery-key-v1"

// ChecksumError reports a recovery key typed with a mistake, naming the
// group (counted from 1) where it is. Its message never quotes the key.
type ChecksumError struct {
	Group int // 1-based; 0 when no single group is to blame
	msg   string
}

func (e *ChecksumError) Error() string { return e.msg }

// Is makes a ChecksumError match ErrTypo.
func (e *ChecksumError) Is(target error) bool { return target == ErrTypo }

// encodeText returns the printed form of a 32-byte private key.
func encodeText(priv []byte) string {
	raw := make([]byte, 0, rawSize)
	raw = append(raw, textVersion)
	raw = append(raw, priv...)
	sum := textSum(raw)
	raw = append(raw, sum[0], sum[1])
	defer clear(raw)

	vals := toBase32(raw)
	var b strings.Builder
	for g := range groups {
		if g > 0 {
			if g%7 == 0 {
				b.WriteByte('\n')
			} else {
				b.WriteByte('-')
			}
		}
		grp := vals[g*groupData : (g+1)*groupData]
		for _, v := range grp {
			b.WriteByte(alphabet[v])
		}
		b.WriteByte(alphabet[groupCheck(grp, g)])
	}
	clear(vals)
	return b.String()
}

func textSum(b []byte) [sha256.Size]byte {
	return sha256.Sum256(append([]byte(textTag), b...))
}

func groupCheck(vals []byte, g int) byte {
	sum := 11 * (g + 1)
	for i, v := range vals {
		sum += (2*i + 1) * int(v)
	}
	return byte(sum % 32)
}

// decodeText parses the printed form and returns the 32-byte private key.
// A mistake yields a *ChecksumError saying where it is.
func decodeText(s string) ([]byte, error) {
	grps := splitGroups(s)
	if err := checkShape(grps); err != nil {
		return nil, err
	}

	vals := make([]byte, 0, groups*groupData)
	defer clear(vals)
	for g, grp := range grps {
		gv := make([]byte, groupSize)
		for i := range len(grp) {
			v, ok := charValue(grp[i])
			if !ok {
				return nil, &ChecksumError{Group: g + 1, msg: fmt.Sprintf(
					"recovery key group %d has %q, which is not a recovery key character",
					g+1, grp[i])}
			}
			gv[i] = v
		}
		if groupCheck(gv[:groupData], g) != gv[groupData] {
			return nil, &ChecksumError{Group: g + 1, msg: fmt.Sprintf(
				"recovery key group %d is mistyped: its check character does not match", g+1)}
		}
		vals = append(vals, gv[:groupData]...)
	}

	raw := fromBase32(vals)
	defer clear(raw)
	sum := textSum(raw[:rawSize-2])
	if raw[0] != textVersion || subtle.ConstantTimeCompare(sum[:2], raw[rawSize-2:]) != 1 {
		return nil, &ChecksumError{msg: "recovery key fails its overall checksum though each " +
			"group checks: are the groups in the right order?"}
	}
	return append([]byte(nil), raw[1:1+keySize]...), nil
}

// splitGroups upper-cases s, drops comment lines (starting with '#'), and
// splits it at dashes and white space, in any mix; a piece that is several
// groups long (no separator at all, or one left out) is cut into groups of
// groupSize.
func splitGroups(s string) []string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			lines = append(lines, t)
		}
	}
	body := strings.ToUpper(strings.Join(lines, " "))
	grps := strings.FieldsFunc(body, func(r rune) bool {
		return r == '-' || r == ' ' || r == '\t' || r == '\r'
	})
	if len(grps) == 1 && len(grps[0]) > groupSize {
		return cut(grps[0])
	}
	// A separator left out between groups joins them: a piece that is a
	// whole number of groups long is cut back into groups.
	var out []string
	for _, g := range grps {
		if len(g) > groupSize && len(g)%groupSize == 0 {
			out = append(out, cut(g)...)
			continue
		}
		out = append(out, g)
	}
	return out
}

// cut splits s into pieces of groupSize characters, the last one shorter.
func cut(s string) []string {
	var out []string
	for len(s) > groupSize {
		out = append(out, s[:groupSize])
		s = s[groupSize:]
	}
	return append(out, s)
}

// checkShape checks the number of groups and their lengths.
func checkShape(grps []string) error {
	if len(grps) == 0 {
		// Not a typo of one group: nothing was given at all.
		return fmt.Errorf("recovery key is empty: want the %d groups of %d characters that "+
			"coffer recovery new printed", groups, groupSize)
	}
	for g, grp := range grps {
		if len(grp) != groupSize && g < groups {
			return &ChecksumError{Group: g + 1, msg: fmt.Sprintf(
				"recovery key group %d has %d characters, want %d", g+1, len(grp), groupSize)}
		}
	}
	if len(grps) != groups {
		return &ChecksumError{msg: fmt.Sprintf("recovery key has %d groups, want %d groups "+
			"of %d characters", len(grps), groups, groupSize)}
	}
	return nil
}

// charValue maps a character to its base32 value, forgiving the look-alikes
// O (for 0) and I, L (for 1).
func charValue(c byte) (byte, bool) {
	switch c {
	case 'O':
		c = '0'
	case 'I', 'L':
		c = '1'
	}
	i := strings.IndexByte(alphabet, c)
	return byte(i), i >= 0
}

// toBase32 splits b into 5-bit values, most significant bit first, the
// last one padded with zero bits.
func toBase32(b []byte) []byte {
	out := make([]byte, 0, (len(b)*8+4)/5)
	var acc uint32
	bits := 0
	for _, c := range b {
		acc = acc<<8 | uint32(c)
		bits += 8
		for bits >= 5 {
			bits -= 5
			out = append(out, byte(acc>>bits)&31)
		}
	}
	if bits > 0 {
		out = append(out, byte(acc<<(5-bits))&31)
	}
	return out
}

// fromBase32 joins 5-bit values into bytes, dropping trailing pad bits.
func fromBase32(vals []byte) []byte {
	out := make([]byte, 0, len(vals)*5/8)
	var acc uint32
	bits := 0
	for _, v := range vals {
		acc = acc<<5 | uint32(v)
		bits += 5
		if bits >= 8 {
			bits -= 8
			out = append(out, byte(acc>>bits))
		}
	}
	return out
}
