// Command validate checks deploy/ offline; deploy/README.md lists the checks.
//
// Usage: validate [-deploy DIR]   (DIR defaults to ./deploy, for runs from the repository root)
//
// Prints one line per failed check and exits 1 if there is any; exits 0 and prints a summary
// otherwise. Needs no network, Docker engine or cluster.
package main

import (
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
)

// report collects failed checks; each names the file it is about.
type report struct {
	failures []string
}

func (r *report) failf(file, format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf("%s: %s", file, fmt.Sprintf(format, args...)))
}

// summary is what a passing run prints.
type summary struct {
	image    image
	objects  []object
	services []string
}

// validate runs every check on the deploy/ directory dir.
func validate(dir string) (*report, summary) {
	r := &report{}
	img := checkDockerfile(r, filepath.Join(dir, "Dockerfile"))
	objs := checkKubernetes(r, filepath.Join(dir, "k8s"), img)
	services := checkCompose(r, filepath.Join(dir, "compose.yaml"), img)
	return r, summary{image: img, objects: objs, services: services}
}

func main() {
	deployDir := flag.String("deploy", "deploy", "the deploy/ directory to check")
	flag.Parse()
	dir, err := filepath.Abs(*deployDir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "validate: %v\n", err)
		os.Exit(2)
	}
	r, s := validate(dir)
	if len(r.failures) > 0 {
		for _, f := range r.failures {
			fmt.Fprintf(os.Stderr, "FAIL %s\n", f)
		}
		fmt.Fprintf(os.Stderr, "validate: %d check(s) failed\n", len(r.failures))
		os.Exit(1)
	}
	fmt.Printf("Dockerfile: %d stages linted, runtime user %s, ports %v, health check %q\n",
		s.image.stages, s.image.user, slices.Sorted(maps.Keys(s.image.exposed)), s.image.healthcheck)
	fmt.Printf("k8s: %d objects strict-decoded and checked (%s)\n", len(s.objects), joinKinds(s.objects))
	fmt.Printf("compose.yaml: schema and wiring checked, services %v\n", s.services)
}
