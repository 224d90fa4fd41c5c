package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/opencontainers/go-digest"
)

// The gRPC and metrics ports every deployment file must agree on.
const (
	grpcPort    = 50051
	metricsPort = 9464
)

// image is what the other files need to know about the runtime stage of the Dockerfile.
type image struct {
	stages      int
	user        string       // as written in USER
	uid         int64        // -1 when not numeric
	exposed     map[int]bool // nil unless the runtime stage was parsed: port cross-checks skip then
	env         map[string]string
	healthcheck []string // HEALTHCHECK CMD, exec form, without the "CMD" marker
	entrypoint  []string
}

// offlineResolver answers base image lookups without a registry: an image config with one
// layer and the usual PATH, so BuildKit's lint runs its rules without the network. Rules that
// need the real base image (its platform, its variables) are therefore not checked.
type offlineResolver struct{}

func (offlineResolver) ResolveImageConfig(_ context.Context, ref string, _ sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	cfg := map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{digest.FromString(ref).String()}},
		"config":       map[string]any{"Env": []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}},
	}
	dt, err := json.Marshal(cfg)
	return ref, "", dt, err
}

// checkDockerfile lints the Dockerfile with BuildKit's rules (what `docker build --check`
// reports) and checks the runtime stage: non-root numeric user, exposed ports, environment,
// volume, exec-form health check and entrypoint.
func checkDockerfile(r *report, path string) image {
	img := image{uid: -1, env: map[string]string{}}
	const name = "Dockerfile"
	dt, err := os.ReadFile(path)
	if err != nil {
		r.failf(name, "%v", err)
		return img
	}

	ctx := context.Background()
	sourceMap := llb.NewSourceMap(nil, name, "Dockerfile", dt)
	if sourceMap.Definition, err = llb.Scratch().Marshal(ctx); err != nil {
		r.failf(name, "lint: %v", err)
		return img
	}
	lint, err := dockerfile2llb.DockerfileLint(ctx, dt, dockerfile2llb.ConvertOpt{
		SourceMap:    sourceMap,
		MetaResolver: offlineResolver{},
	})
	if err != nil {
		r.failf(name, "lint: %v", err)
		return img
	}
	if lint.Error != nil {
		r.failf(name, "does not build: %s", lint.Error.Message)
	}
	for _, w := range lint.Warnings {
		line := 0
		if w.Location != nil && len(w.Location.Ranges) > 0 {
			line = int(w.Location.Ranges[0].Start.Line)
		}
		r.failf(name, "line %d: %s: %s (%s)", line, w.RuleName, w.Detail, w.URL)
	}

	ast, err := parser.Parse(bytes.NewReader(dt))
	if err != nil {
		r.failf(name, "parse: %v", err)
		return img
	}
	stages, _, err := instructions.Parse(ast.AST, nil)
	if err != nil {
		r.failf(name, "parse: %v", err)
		return img
	}
	img.stages = len(stages)
	if len(stages) < 2 {
		r.failf(name, "want a multi-stage build (builder + runtime), found %d stage(s)", len(stages))
		return img
	}
	runtime := stages[len(stages)-1]
	img.exposed = map[int]bool{}
	var volumes []string
	for _, c := range runtime.Commands {
		switch c := c.(type) {
		case *instructions.UserCommand:
			img.user = c.User
		case *instructions.ExposeCommand:
			for _, p := range c.Ports {
				n, err := strconv.Atoi(strings.TrimSuffix(p, "/tcp"))
				if err != nil {
					r.failf(name, "EXPOSE %s: not a TCP port number", p)
					continue
				}
				img.exposed[n] = true
			}
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				img.env[kv.Key] = kv.Value
			}
		case *instructions.VolumeCommand:
			volumes = append(volumes, c.Volumes...)
		case *instructions.HealthCheckCommand:
			test := c.Health.Test
			if len(test) < 2 || test[0] != "CMD" {
				r.failf(name, "HEALTHCHECK must use the exec form CMD [\"...\"] (the runtime image has no shell), got %q", test)
				continue
			}
			img.healthcheck = test[1:]
		case *instructions.EntrypointCommand:
			if c.PrependShell {
				r.failf(name, "ENTRYPOINT must use the exec form (no shell in the image; signals must reach the server)")
			}
			img.entrypoint = c.CmdLine
		}
	}

	user, _, _ := strings.Cut(img.user, ":")
	switch uid, err := strconv.ParseInt(user, 10, 64); {
	case img.user == "":
		r.failf(name, "the runtime stage sets no USER: the server would run as root")
	case err != nil:
		r.failf(name, "USER %s: use a numeric uid so that Kubernetes runAsNonRoot can verify it", img.user)
	case uid == 0:
		r.failf(name, "USER %s is root", img.user)
	default:
		img.uid = uid
	}
	for _, p := range []int{grpcPort, metricsPort} {
		if !img.exposed[p] {
			r.failf(name, "the runtime stage does not EXPOSE %d", p)
		}
	}
	if got, want := img.env["EVENTBUS_LISTEN"], fmt.Sprintf("0.0.0.0:%d", grpcPort); got != want {
		r.failf(name, "ENV EVENTBUS_LISTEN=%q, want %q (reachable from outside the container)", got, want)
	}
	if got, want := img.env["EVENTBUS_METRICS_ADDR"], fmt.Sprintf("0.0.0.0:%d", metricsPort); got != want {
		r.failf(name, "ENV EVENTBUS_METRICS_ADDR=%q, want %q", got, want)
	}
	dataFile := img.env["EVENTBUS_DATA_FILE"]
	if !slices.ContainsFunc(volumes, func(v string) bool {
		return dataFile != "" && strings.HasPrefix(dataFile, strings.TrimSuffix(v, "/")+"/")
	}) {
		r.failf(name, "EVENTBUS_DATA_FILE=%q is not inside a VOLUME (%v): SQLite data would live in the container layer", dataFile, volumes)
	}
	checkHealthCommand(r, name, img.healthcheck, false)
	if len(img.entrypoint) == 0 || !strings.HasSuffix(img.entrypoint[0], "/eventbus") {
		r.failf(name, "ENTRYPOINT %q does not run the eventbus binary", img.entrypoint)
	}
	return img
}

// checkHealthCommand checks a container health check command: the eventbus binary's own
// grpc.health.v1 probe against the gRPC port on loopback, over TLS when the server serves TLS.
func checkHealthCommand(r *report, file string, cmd []string, tls bool) {
	want := []string{fmt.Sprintf("http://127.0.0.1:%d", grpcPort)}
	if tls {
		// The certificate must name the address: localhost, or 127.0.0.1 as an IP SAN.
		want = []string{fmt.Sprintf("https://localhost:%d", grpcPort), fmt.Sprintf("https://127.0.0.1:%d", grpcPort)}
	}
	if len(cmd) < 2 || !strings.HasSuffix(cmd[0], "eventbus") || cmd[1] != "health" {
		r.failf(file, "health check %q: want `eventbus health --addr %s`", cmd, want[0])
		return
	}
	if i := slices.Index(cmd, "--addr"); i < 0 || i+1 >= len(cmd) || !slices.Contains(want, cmd[i+1]) {
		r.failf(file, "health check %q: want --addr %s", cmd, strings.Join(want, " or "))
	}
}
