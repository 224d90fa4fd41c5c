package main

import (
	"fmt"
	"slices"
	"strings"
)

func sortedPorts(m map[int]bool) []int {
	var out []int
	for p, ok := range m {
		if ok {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

func joinKinds(objs []object) string {
	var parts []string
	for _, o := range objs {
		parts = append(parts, fmt.Sprintf("%s/%s", o.kind, o.name))
	}
	return strings.Join(parts, ", ")
}
