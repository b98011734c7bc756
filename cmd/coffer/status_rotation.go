package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"time"

	"github.com/cofferfs/coffer/fs/rewrap"
	"github.com/cofferfs/coffer/keys"
)

// rotationStatus is the rotation part of status.
type rotationStatus struct {
	// InProgress is the rotation recorded in .coffer/rotation.json.
	InProgress *keys.Rotation `json:"in_progress,omitempty"`
	// MaxKeyAgeDays is the policy's maximum primary key age, 0 for none.
	MaxKeyAgeDays int `json:"max_key_age_days"`
	// Due reports that the primary key is older than MaxKeyAgeDays.
	Due bool `json:"due"`
	// Mounts are the running mounts and the ring generation each uses.
	Mounts []keys.Ack `json:"mounts"`
	// FilesByKey counts headers and directory records by the ring key of
	// their current slot (with --scan).
	FilesByKey map[string]int `json:"files_by_key,omitempty"`
}

// rotationOf gathers the rotation status of backing; scan counts headers.
func rotationOf(backing string, cfg *keys.Config, now time.Time, scan bool) (rotationStatus, error) {
	var rs rotationStatus
	var err error
	if rs.InProgress, err = keys.ReadRotation(backing); err != nil {
		return rs, err
	}
	if cfg.Policy != nil {
		rs.MaxKeyAgeDays = cfg.Policy.MaxKeyAgeDays
	}
	rs.Due = cfg.RotationDue(now)
	if rs.Mounts, err = keys.MountAcks(backing); err != nil {
		return rs, err
	}
	if rs.Mounts == nil {
		rs.Mounts = []keys.Ack{}
	}
	if scan {
		byKey, err := rewrap.Tally(backing)
		if err != nil {
			return rs, fmt.Errorf("failed to scan headers: %w", err)
		}
		rs.FilesByKey = map[string]int{}
		for id, n := range byKey {
			rs.FilesByKey[strconv.FormatUint(uint64(id), 10)] = n
		}
	}
	return rs, nil
}

// print writes the rotation status as text.
func (rs rotationStatus) print(w io.Writer, generation uint64) {
	fmt.Fprintf(w, "\nrotation:\n")
	switch {
	case rs.InProgress != nil:
		fmt.Fprintf(w, "  in progress to ring key %d since %s (as .coffer/rotation.json says, "+
			"unverified): run coffer rotate to finish it\n",
			rs.InProgress.Target, rs.InProgress.Started.Format(time.RFC3339))
	default:
		fmt.Fprintf(w, "  none in progress\n")
	}
	if rs.MaxKeyAgeDays > 0 {
		fmt.Fprintf(w, "  policy: maximum key age %d days\n", rs.MaxKeyAgeDays)
	}
	if rs.Due {
		fmt.Fprintf(w, "  warning: the primary ring key is older than %d days: run coffer rotate\n",
			rs.MaxKeyAgeDays)
	}
	for _, m := range rs.Mounts {
		note := ""
		if m.Generation < generation {
			note = " (behind)"
		}
		fmt.Fprintf(w, "  mount %s pid %d uses generation %d%s\n", printable(m.Host), m.PID,
			m.Generation, note)
	}
	if rs.FilesByKey != nil {
		ids := make([]string, 0, len(rs.FilesByKey))
		for id := range rs.FilesByKey {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		fmt.Fprintf(w, "  headers and directory records by ring key:\n")
		for _, id := range ids {
			fmt.Fprintf(w, "    %s: %d\n", id, rs.FilesByKey[id])
		}
	}
}
