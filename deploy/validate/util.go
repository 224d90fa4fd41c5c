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
