//go:build linux

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSQLite runs the same sqlite3 sessions in a plain directory and in the
// mount: a WAL database filled by a few thousand inserts in transactions
// (the -shm file is a shared writable mmap), then reopened for an integrity
// check, then read with mmap I/O. Expected counts and sums are computed here.
func TestSQLite(t *testing.T) {
	requireTools(t, "sqlite3", "grep")
	v := newVolume(t)
	plain := t.TempDir()
	marker := fixtureMarker(t, "sqlite")

	script := filepath.Join(t.TempDir(), "fill.sql")
	sql, count, sum, bodyLen := sqliteFill(marker)
	require.NoError(t, os.WriteFile(script, []byte(sql), 0o644))
	totals := fmt.Sprintf("%d|%d\n", count, sum)

	sessions := []struct {
		name string
		sql  string
		want string
	}{
		{"fill", ".read " + script, "wal\n" + totals},
		{"reopen", "PRAGMA journal_mode; PRAGMA integrity_check; SELECT count(*), sum(v) FROM items;",
			"wal\nok\n" + totals},
		{"mmap", "PRAGMA mmap_size=268435456; PRAGMA integrity_check;" +
			" SELECT count(*), sum(length(body)), sum(v) FROM items;",
			fmt.Sprintf("268435456\nok\n%d|%d|%d\n", count, bodyLen, sum)},
		{"update", "BEGIN; UPDATE items SET v = v - 1 WHERE id % 7 = 0; COMMIT;" +
			" PRAGMA mmap_size=268435456; PRAGMA integrity_check; SELECT count(*) FROM items;",
			fmt.Sprintf("268435456\nok\n%d\n", count)},
	}
	for _, s := range sessions {
		t.Run(s.name, func(t *testing.T) {
			want := run(t, "", "sqlite3", "-bail", filepath.Join(plain, "app.db"), s.sql)
			got := run(t, "", "sqlite3", "-bail", v.path("app.db"), s.sql)
			assert.Equal(t, s.want, want, "plain directory")
			assert.Equal(t, s.want, got, "mount")
		})
	}

	t.Run("dump", func(t *testing.T) {
		want := run(t, "", "sqlite3", filepath.Join(plain, "app.db"), ".dump")
		got := run(t, "", "sqlite3", v.path("app.db"), ".dump")
		assert.Equal(t, want, got)

		hdr := make([]byte, 20)
		f, err := os.Open(v.path("app.db"))
		require.NoError(t, err)
		defer f.Close()
		_, err = f.ReadAt(hdr, 0)
		require.NoError(t, err)
		assert.Equal(t, []byte{2, 2}, hdr[18:20], "database header: WAL read/write versions")
	})

	t.Run("two connections in one process", func(t *testing.T) {
		for _, dir := range []string{plain, v.mnt} {
			out := run(t, "", "sqlite3", "-bail", ":memory:", ".read "+twoConnections(t, dir))
			assert.Equal(t, "0\n0\ninserted\n", out, "in %s", dir)
		}
	})

	v.unmount(t)
	assertNoPlaintext(t, v.backing, marker)
}

// twoConnections writes a sqlite3 script that reads one database in dir
// through two connections of the same process, ends both transactions, and
// then has another process insert a row, which must not find the database
// locked. SQLite shares POSIX locks between the connections of one process,
// so the lock taken through one descriptor is released through the other.
func twoConnections(t *testing.T, dir string) string {
	db := filepath.Join(dir, "two.db")
	run(t, "", "sqlite3", db, "CREATE TABLE t(x);")
	script := filepath.Join(t.TempDir(), "two.sql")
	require.NoError(t, os.WriteFile(script, []byte(strings.Join([]string{
		".open " + db,
		"BEGIN; SELECT count(*) FROM t;",
		".connection 1",
		".open " + db,
		"BEGIN; SELECT count(*) FROM t;",
		".connection 0",
		"COMMIT;",
		".connection 1",
		"COMMIT;",
		`.shell sqlite3 ` + db + ` "INSERT INTO t VALUES(1)" && echo inserted`,
	}, "\n")+"\n"), 0o644))
	return script
}

// sqliteFill returns a script that creates a WAL database and inserts 5000
// rows in 10 transactions, updates and deletes some, and prints count and
// sum; it also returns the expected row count, sum of v and total body length.
func sqliteFill(marker string) (sql string, count, sum, bodyLen int) {
	var b strings.Builder
	b.WriteString("PRAGMA journal_mode=WAL;\n")
	b.WriteString("CREATE TABLE items(id INTEGER PRIMARY KEY, k TEXT NOT NULL UNIQUE," +
		" v INTEGER NOT NULL, body TEXT NOT NULL);\nCREATE INDEX items_v ON items(v);\n")

	const rows, perTx = 5000, 500
	vals := map[int]int{}
	bodies := map[int]int{}
	for id := 1; id <= rows; id++ {
		if id%perTx == 1 {
			b.WriteString("BEGIN;\n")
		}
		val := id * 7919 % 100003
		body := fmt.Sprintf("row %d %s %s", id, marker, strings.Repeat(string(rune('a'+id%26)), id%300))
		fmt.Fprintf(&b, "INSERT INTO items(k, v, body) VALUES('key-%06d', %d, '%s');\n", id, val, body)
		vals[id], bodies[id] = val, len(body)
		if id%perTx == 0 {
			b.WriteString("COMMIT;\n")
		}
	}
	b.WriteString("UPDATE items SET v = v + 1 WHERE id % 7 = 0;\n")
	b.WriteString("DELETE FROM items WHERE id % 13 = 0;\n")
	b.WriteString("SELECT count(*), sum(v) FROM items;\n")

	for id, val := range vals {
		if id%13 == 0 {
			continue
		}
		if id%7 == 0 {
			val++
		}
		count, sum, bodyLen = count+1, sum+val, bodyLen+bodies[id]
	}
	return b.String(), count, sum, bodyLen
}
