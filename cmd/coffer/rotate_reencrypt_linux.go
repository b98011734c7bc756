package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cofferfs/coffer/fs/reencrypt"
	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/audit"
)

// refuseHardLinks stops a re-encryption before anything changes if a file
// has hard links: a rewritten file is a new inode, which would split the
// names of one file into separate files.
func refuseHardLinks(backing string) (int, error) {
	s, err := reencrypt.Scan(backing)
	if err != nil {
		return 0, err
	}
	if len(s.HardLinks) == 0 {
		return s.Files, nil
	}
	shown := s.HardLinks
	if len(shown) > 10 {
		shown = shown[:10]
	}
	more := ""
	if n := len(s.HardLinks) - len(shown); n > 0 {
		more = fmt.Sprintf(" and %d more", n)
	}
	return 0, withHints(fmt.Errorf("failed to re-encrypt: %d backing files have hard links, "+
		"which a rewrite would split into separate files (nothing was changed): %s%s",
		len(s.HardLinks), strings.Join(shown, ", "), more),
		"through the mount, replace each hard link by a copy (cp -p NAME NAME.new && mv NAME.new "+
			"NAME for every name but one), unmount, and run coffer rotate --reencrypt again; "+
			"coffer path decrypt names the plaintext path of a backing path")
}

// reencrypt gives every file a new data key under target, resuming an
// interrupted run.
func (r *rotation) reencrypt(target uint32, total int) error {
	st, err := keys.ReadReencrypt(r.opts.backing)
	if err != nil {
		return err
	}
	if st == nil || st.Target != target {
		next := keys.Reencrypt{Target: target, Token: reencrypt.NewToken(),
			Generation: r.cfg.Ring.Generation, Started: time.Now().UTC()}
		if st != nil {
			next.Token = st.Token // its temporary files are still to be removed
		}
		if err := keys.WriteReencrypt(r.opts.backing, next); err != nil {
			return err
		}
		st = &next
	} else {
		fmt.Fprintf(r.a.stderr, "coffer: resuming the re-encryption started %s\n",
			st.Started.Format("2006-01-02 15:04:05Z07:00"))
	}
	r.kill()

	p := newBarProgress(r.a.stderr, "re-encrypting", total)
	res, err := reencrypt.Run(r.ctx, r.opts.backing, reencrypt.Options{
		VolumeID:     r.cfg.VolumeID,
		Keys:         r.ring,
		Target:       target,
		Token:        st.Token,
		Progress:     p.update,
		BeforeRename: r.kill,
		AfterRename:  r.kill,
		Logger:       r.a.log,
	})
	p.done()
	ev := audit.Event{Type: audit.EventReencrypt, RingKey: target, Err: err}
	if res != nil {
		ev.Count = uint64(res.Rewritten)
		ev.Detail = map[string]string{"files": strconv.Itoa(res.Files),
			"skipped": strconv.Itoa(res.Skipped), "removed_temporary": strconv.Itoa(res.Removed)}
	}
	recordAudit(r.ctx, r.a, r.alog, ev)
	if err != nil {
		var ferr *reencrypt.FileError
		if errors.As(err, &ferr) {
			return withHints(fmt.Errorf("failed to re-encrypt (no key was retired or purged): %w",
				err), "the file named is unchanged and so are the files not reached yet; fix or "+
				"remove it, then run coffer rotate --reencrypt again to resume")
		}
		return fmt.Errorf("failed to re-encrypt: %w", err)
	}
	r.reencrypted = res
	r.a.log.Info().Int("rewritten", res.Rewritten).Int("skipped", res.Skipped).
		Msg("re-encryption finished")
	return nil
}
