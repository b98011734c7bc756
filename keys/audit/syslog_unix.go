//go:build unix

package audit

import "log/syslog"

// localSyslog connects to the local syslog daemon (or journald's syslog
// socket) as facility authpriv, level info.
func localSyslog() (Syslogger, error) {
	return syslog.New(syslog.LOG_INFO|syslog.LOG_AUTHPRIV, SyslogTag)
}
