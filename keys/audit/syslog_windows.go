//go:build windows

package audit

import "errors"

// localSyslog reports that Windows has no syslog; the event log is not
// supported yet.
func localSyslog() (Syslogger, error) {
	return nil, errors.New("syslog is not available on Windows")
}
