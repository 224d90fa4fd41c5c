package main

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// checkCompose loads the compose file the way `docker compose config` does (compose-go:
// compose-spec schema, interpolation with an empty environment so the defaults are what is
// checked, consistency of references), then checks the wiring: eventbus on the Postgres
// service, traces to the Jaeger service, health checks behind every service_healthy
// condition, and any override of the image's health check.
func checkCompose(r *report, path string, img image) []string {
	const file = "compose.yaml"
	opts, err := cli.NewProjectOptions([]string{path},
		cli.WithWorkingDirectory(filepath.Dir(path)),
		cli.WithEnv([]string{}),
		cli.WithInterpolation(true),
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		r.failf(file, "%v", err)
		return nil
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		r.failf(file, "%v", err)
		return nil
	}
	names := project.ServiceNames()
	slices.Sort(names)

	for name, s := range project.Services {
		for dep, d := range s.DependsOn {
			if d.Condition == types.ServiceConditionHealthy {
				hc := project.Services[dep].HealthCheck
				// eventbus inherits the image's HEALTHCHECK unless it disables or replaces it.
				inherits := dep == "eventbus" && img.healthcheck != nil && (hc == nil || !hc.Disable && len(hc.Test) == 0)
				if !inherits && (hc == nil || hc.Disable || len(hc.Test) == 0) {
					r.failf(file, "service %s waits for %s to be healthy, but %s has no healthcheck", name, dep, dep)
				}
			}
		}
	}

	eb, ok := project.Services["eventbus"]
	if !ok {
		r.failf(file, "no eventbus service")
		return names
	}
	pg, ok := project.Services["postgres"]
	if !ok {
		r.failf(file, "no postgres service")
		return names
	}
	if !strings.HasPrefix(pg.Image, "postgres:16") {
		r.failf(file, "postgres image %q, want postgres:16", pg.Image)
	}
	if !slices.ContainsFunc(pg.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == "/var/lib/postgresql/data" }) {
		r.failf(file, "postgres keeps its data in the container: mount a volume on /var/lib/postgresql/data")
	}
	if eb.DependsOn["postgres"].Condition != types.ServiceConditionHealthy {
		r.failf(file, "eventbus must depend on postgres with condition service_healthy")
	}

	env := eb.Environment.ToMapping()
	db, err := url.Parse(env["EVENTBUS_DATABASE_URL"])
	switch {
	case err != nil || db.Scheme != "postgres":
		r.failf(file, "eventbus EVENTBUS_DATABASE_URL %q is not a postgres:// URL (%v)", env["EVENTBUS_DATABASE_URL"], err)
	case db.Hostname() != "postgres" || (db.Port() != "" && db.Port() != "5432"):
		r.failf(file, "eventbus EVENTBUS_DATABASE_URL points at %s, not the postgres service", db.Host)
	default:
		pgEnv := pg.Environment.ToMapping()
		pass, _ := db.User.Password()
		if db.User.Username() != pgEnv["POSTGRES_USER"] || pass != pgEnv["POSTGRES_PASSWORD"] ||
			strings.TrimPrefix(db.Path, "/") != pgEnv["POSTGRES_DB"] {
			r.failf(file, "eventbus EVENTBUS_DATABASE_URL (user %q, database %q) does not match the postgres service's POSTGRES_USER/PASSWORD/DB",
				db.User.Username(), strings.TrimPrefix(db.Path, "/"))
		}
	}

	otlp, err := url.Parse(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
	if err != nil || otlp.Host == "" {
		r.failf(file, "eventbus OTEL_EXPORTER_OTLP_ENDPOINT %q is not a URL (%v)", env["OTEL_EXPORTER_OTLP_ENDPOINT"], err)
	} else if j, ok := project.Services[otlp.Hostname()]; !ok || !strings.HasPrefix(j.Image, "jaegertracing/jaeger:2") || otlp.Port() != "4317" {
		r.failf(file, "eventbus OTEL_EXPORTER_OTLP_ENDPOINT %s is not OTLP gRPC (4317) of a jaegertracing/jaeger:2.x service", otlp)
	} else if _, ok := eb.DependsOn[otlp.Hostname()]; !ok {
		r.failf(file, "eventbus does not depend on %s", otlp.Hostname())
	}
	if env["OTEL_SERVICE_NAME"] != "eventbus" {
		r.failf(file, "eventbus OTEL_SERVICE_NAME=%q, want eventbus", env["OTEL_SERVICE_NAME"])
	}
	checkAddrOverrides(r, file, "eventbus", func(k string) (string, bool) { v, ok := env[k]; return v, ok })

	published := map[uint32]bool{}
	for _, p := range eb.Ports {
		published[p.Target] = true
		if img.exposed != nil && !img.exposed[int(p.Target)] {
			r.failf(file, "eventbus publishes container port %d, which the Dockerfile does not EXPOSE", p.Target)
		}
	}
	if !published[grpcPort] {
		r.failf(file, "eventbus does not publish the gRPC port %d", grpcPort)
	}
	// The image's HEALTHCHECK applies unless the service overrides it: check only an override.
	switch hc := eb.HealthCheck; {
	case hc == nil:
	case hc.Disable:
		r.failf(file, "eventbus disables the image's health check")
	case len(hc.Test) == 0: // timings only: the image's command
	case len(hc.Test) < 2 || hc.Test[0] != "CMD":
		r.failf(file, "eventbus healthcheck must be exec-form (test: [\"CMD\", ...]; the image has no shell)")
	default:
		checkHealthCommand(r, file, hc.Test[1:], env[envTLSCert] != "")
	}
	checkComposeProtection(r, project, eb)
	if eb.Build == nil {
		r.failf(file, "eventbus has no build section")
	} else {
		dockerfile := eb.Build.Dockerfile
		if !filepath.IsAbs(dockerfile) {
			dockerfile = filepath.Join(eb.Build.Context, dockerfile)
		}
		if _, err := os.Stat(dockerfile); err != nil {
			r.failf(file, "eventbus build: %v", err)
		}
		if _, err := os.Stat(filepath.Join(eb.Build.Context, "Cargo.toml")); err != nil {
			r.failf(file, "eventbus build context %s is not the repository root (%v)", eb.Build.Context, err)
		}
	}
	return names
}
