package main

import (
	"fmt"

	"code.cloudfoundry.org/lager/v3"
	"github.com/go-logr/logr"
)

// lagerSink carries client-go's klog output (reflector and watch errors,
// leader election) into lager, so Iris writes one log format. klog's
// verbosity 0 becomes info, anything more verbose debug.
type lagerSink struct {
	logger lager.Logger
	name   string
	values []any
}

func newLagerSink(logger lager.Logger) logr.LogSink {
	return &lagerSink{logger: logger.Session("client-go")}
}

func (s *lagerSink) Init(logr.RuntimeInfo) {}

// Enabled keeps client-go's chattiest levels (4 and up: every request) out.
func (s *lagerSink) Enabled(level int) bool { return level < 4 }

func (s *lagerSink) Info(level int, msg string, kv ...any) {
	if level == 0 {
		s.logger.Info(s.message(msg), s.data(kv))
		return
	}
	s.logger.Debug(s.message(msg), s.data(kv))
}

func (s *lagerSink) Error(err error, msg string, kv ...any) {
	s.logger.Error(s.message(msg), err, s.data(kv))
}

func (s *lagerSink) WithValues(kv ...any) logr.LogSink {
	return &lagerSink{logger: s.logger, name: s.name, values: append(append([]any(nil), s.values...), kv...)}
}

func (s *lagerSink) WithName(name string) logr.LogSink {
	if s.name != "" {
		name = s.name + "." + name
	}
	return &lagerSink{logger: s.logger, name: name, values: s.values}
}

func (s *lagerSink) message(msg string) string {
	if s.name != "" {
		return s.name + ": " + msg
	}
	return msg
}

func (s *lagerSink) data(kv []any) lager.Data {
	data := lager.Data{}
	all := append(append([]any(nil), s.values...), kv...)
	for i := 0; i+1 < len(all); i += 2 {
		data[fmt.Sprint(all[i])] = fmt.Sprint(all[i+1])
	}
	return data
}
