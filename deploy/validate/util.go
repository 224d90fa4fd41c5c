package main

import (
	"fmt"
	"strings"
)

func joinKinds(objs []object) string {
	var parts []string
	for _, o := range objs {
		parts = append(parts, fmt.Sprintf("%s/%s", o.kind, o.name))
	}
	return strings.Join(parts, ", ")
}

// checkAddrOverrides checks the listen addresses a deployment file sets over the image's ENV
// (unset, the image's apply): they must stay on the ports every file agrees on.
func checkAddrOverrides(r *report, file, who string, lookup func(string) (string, bool)) {
	for _, a := range []struct {
		name string
		port int
	}{{"EVENTBUS_LISTEN", grpcPort}, {"EVENTBUS_METRICS_ADDR", metricsPort}} {
		if got, ok := lookup(a.name); ok {
			if want := fmt.Sprintf("0.0.0.0:%d", a.port); got != want {
				r.failf(file, "%s: %s=%q, want %q (or leave the image's)", who, a.name, got, want)
			}
		}
	}
}
