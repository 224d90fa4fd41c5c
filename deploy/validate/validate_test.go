package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyDeploy copies ../ (the deploy/ directory) into a temporary repository root with a
// Cargo.toml, so a case can break one file without touching the real ones.
func copyDeploy(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "Cargo.toml"), []byte("[workspace]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(root, "deploy")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"Dockerfile", "compose.yaml", "k8s"} {
		src := filepath.Join("..", rel)
		err := filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			target := filepath.Join(dst, strings.TrimPrefix(path, ".."+string(filepath.Separator)))
			if info.IsDir() {
				return os.MkdirAll(target, 0o755)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(target, data, 0o644)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// The real deploy/ in place, in the real repository (the compose build context must hold its
// Cargo.toml). go test does not track files outside the module for its cache: run it with
// -count=1 after editing deploy/ (tests/lib/deploy.sh does).
func TestDeployDirectoryPasses(t *testing.T) {
	dir, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	r, s := validate(dir)
	for _, f := range r.failures {
		t.Errorf("unexpected failure: %s", f)
	}
	if len(s.objects) != 6 || len(s.services) != 4 || s.image.stages < 2 {
		t.Errorf("checked %d objects, %d services, %d stages; want 6, 4, >= 2", len(s.objects), len(s.services), s.image.stages)
	}
}

// Each case breaks one thing in a copy of deploy/ and names the failure it must cause.
func TestDefectsAreCaught(t *testing.T) {
	cases := []struct {
		name, file, old, new, want string
	}{
		{"misspelled k8s field", "k8s/deployment.yaml", "readinessProbe:", "readinesProbe:", `unknown field "spec.template.spec.containers[0].readinesProbe"`},
		{"duplicate k8s field", "k8s/service.yaml", "  type: ClusterIP\n", "  type: ClusterIP\n  type: NodePort\n", `key "type" already set in map`},
		{"wrong k8s type", "k8s/deployment.yaml", "replicas: 3", "replicas: three", "cannot unmarshal"},
		{"one replica", "k8s/deployment.yaml", "replicas: 3", "replicas: 1", "want replicas >= 2"},
		{"root allowed", "k8s/deployment.yaml", "runAsNonRoot: true", "runAsNonRoot: false", "runAsNonRoot must be true"},
		{"writable root fs", "k8s/deployment.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "readOnlyRootFilesystem must be true"},
		{"capabilities kept", "k8s/deployment.yaml", `drop: ["ALL"]`, `drop: ["NET_RAW"]`, "must drop ALL"},
		{"grpc probe", "k8s/deployment.yaml", "livenessProbe:\n            httpGet:\n              path: /healthz\n              port: metrics\n              scheme: HTTPS\n", "livenessProbe:\n            grpc:\n              port: 50051\n", "livenessProbe must be an httpGet probe over HTTPS"},
		{"plain HTTP probe", "k8s/deployment.yaml", "path: /readyz\n              port: metrics\n              scheme: HTTPS", "path: /readyz\n              port: metrics\n              scheme: HTTP", `readinessProbe has scheme "HTTP", want HTTPS`},
		{"no startup probe", "k8s/deployment.yaml", "          startupProbe:\n            httpGet:\n              path: /healthz\n              port: metrics\n              scheme: HTTPS\n            periodSeconds: 2\n            failureThreshold: 30\n", "", "no startupProbe"},
		{"probe on wrong port", "k8s/deployment.yaml", "path: /readyz\n              port: metrics", "path: /readyz\n              port: grpc", "readinessProbe asks port grpc, the HTTP listener is on 9464"},
		{"runAsUser not the image's", "k8s/deployment.yaml", "runAsUser: 65532", "runAsUser: 1000", "runAsUser 1000 differs from the image's USER 65532"},
		{"readiness ignores draining", "k8s/deployment.yaml", "path: /readyz", "path: /healthz", `readinessProbe asks "/healthz", want "/readyz"`},
		{"liveness fails while draining", "k8s/deployment.yaml", "livenessProbe:\n            httpGet:\n              path: /healthz", "livenessProbe:\n            httpGet:\n              path: /readyz", `livenessProbe asks "/readyz", want "/healthz"`},
		{"privilege escalation", "k8s/deployment.yaml", "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true", "allowPrivilegeEscalation must be false"},
		{"no time to drain", "k8s/deployment.yaml", "terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds: 5", "terminationGracePeriodSeconds must be set"},
		{"no memory limit", "k8s/deployment.yaml", "              memory: 256Mi\n", "", "memory limit"},
		{"literal database URL", "k8s/deployment.yaml", "              valueFrom:\n                secretKeyRef:\n                  name: eventbus-database\n                  key: url\n", "              value: postgres://u:p@db/eventbus\n", "must come from a secretKeyRef"},
		{"secret key mismatch", "k8s/secret.example.yaml", "  url: postgres", "  uri: postgres", `has no key "url"`},
		{"service misses port", "k8s/service.yaml", "targetPort: grpc", "targetPort: grcp", "targetPort grcp is no container port"},
		{"pdb blocks drains", "k8s/poddisruptionbudget.yaml", "maxUnavailable: 1", "minAvailable: 3", "no node could ever be drained"},
		{"pdb selects nothing", "k8s/poddisruptionbudget.yaml", "matchLabels:\n      app.kubernetes.io/name: eventbus", "matchLabels:\n      app.kubernetes.io/name: eventbus-db", "does not select the Deployment's pods"},
		{"namespace pinned", "k8s/service.yaml", "  name: eventbus\n", "  name: eventbus\n  namespace: prod\n", "namespace-agnostic"},
		{"unlisted manifest", "k8s/kustomization.yaml", "  - service.yaml\n", "", "does not list service.yaml"},
		{"example listed", "k8s/kustomization.yaml", "  - service.yaml\n", "  - service.yaml\n  - secret.example.yaml\n", "would overwrite the real object"},
		{"kustomization typo", "k8s/kustomization.yaml", "resources:", "resource:", "kustomize build"},
		{"compose unknown key", "compose.yaml", "    healthcheck:\n      test: [\"CMD\", \"pg_isready\"", "    healtcheck:\n      test: [\"CMD\", \"pg_isready\"", "healtcheck"},
		{"compose bad condition", "compose.yaml", "condition: service_healthy", "condition: service_healty", "condition value must be one of"},
		{"compose unknown dependency", "compose.yaml", "      jaeger:\n        condition: service_started", "      jager:\n        condition: service_started", "jager"},
		{"compose traces nowhere", "compose.yaml", "http://jaeger:4317", "http://jaeger:4318", "OTLP gRPC (4317)"},
		{"compose wrong database", "compose.yaml", "@postgres:5432/eventbus}", "@localhost:5432/eventbus}", "not the postgres service"},
		{"compose healthy without healthcheck", "compose.yaml", "      jaeger:\n        condition: service_started", "      jaeger:\n        condition: service_healthy", "jaeger has no healthcheck"},
		{"compose health check on wrong port", "compose.yaml", `"https://localhost:50051"`, `"https://localhost:50052"`, "compose.yaml: health check"},
		{"compose shell health check", "compose.yaml", `test: ["CMD", "/usr/local/bin/eventbus", "health", "--addr", "https://localhost:50051", "--ca-cert", "/etc/eventbus/tls/ca.crt"]`, "test: eventbus health", "healthcheck must be exec-form"},
		{"compose health check disabled", "compose.yaml", `test: ["CMD", "/usr/local/bin/eventbus", "health", "--addr", "https://localhost:50051", "--ca-cert", "/etc/eventbus/tls/ca.crt"]`, "disable: true", "disables the image's health check"},
		{"compose loopback listen", "compose.yaml", "      OTEL_SERVICE_NAME: eventbus\n", "      OTEL_SERVICE_NAME: eventbus\n      EVENTBUS_LISTEN: 127.0.0.1:50051\n", `eventbus: EVENTBUS_LISTEN="127.0.0.1:50051"`},
		{"k8s loopback listen", "k8s/deployment.yaml", "            - name: OTEL_SERVICE_NAME\n", "            - name: EVENTBUS_LISTEN\n              value: 127.0.0.1:50051\n            - name: OTEL_SERVICE_NAME\n", `EVENTBUS_LISTEN="127.0.0.1:50051"`},
		{"k8s metrics on another port", "k8s/deployment.yaml", "            - name: OTEL_SERVICE_NAME\n", "            - name: EVENTBUS_METRICS_ADDR\n              value: 0.0.0.0:9000\n            - name: OTEL_SERVICE_NAME\n", `EVENTBUS_METRICS_ADDR="0.0.0.0:9000"`},
		{"k8s insecure", "k8s/deployment.yaml", "            - name: OTEL_SERVICE_NAME\n", "            - name: EVENTBUS_INSECURE\n              value: \"true\"\n            - name: OTEL_SERVICE_NAME\n", `EVENTBUS_INSECURE="true": serve with TLS`},
		{"k8s insecure flag", "k8s/deployment.yaml", `args: ["serve"]`, `args: ["serve", "--insecure"]`, "runs with --insecure"},
		{"k8s no TLS key", "k8s/deployment.yaml", "            - name: EVENTBUS_TLS_KEY\n              value: /etc/eventbus/tls/tls.key\n", "", "EVENTBUS_TLS_KEY is not set"},
		{"k8s no client authentication", "k8s/deployment.yaml", "            - name: EVENTBUS_ADMIN_TOKEN_FILE\n              value: /etc/eventbus/admin-token/token\n", "", "no client authentication"},
		{"k8s subPath mount", "k8s/deployment.yaml", "mountPath: /etc/eventbus/tls\n", "mountPath: /etc/eventbus/tls/tls.crt\n              subPath: tls.crt\n", "EVENTBUS_TLS_CERT=/etc/eventbus/tls/tls.crt comes from a subPath mount of volume tls"},
		{"k8s writable secret mount", "k8s/deployment.yaml", "mountPath: /etc/eventbus/admin-token\n              readOnly: true", "mountPath: /etc/eventbus/admin-token\n              readOnly: false", "volume mount admin-token, which is not readOnly"},
		{"k8s token not from a Secret", "k8s/deployment.yaml", "secret:\n            secretName: eventbus-admin-token\n            defaultMode: 0440", "configMap:\n            name: eventbus-admin-token", "volume admin-token, which is not a Secret"},
		{"k8s secret readable by all", "k8s/deployment.yaml", "secretName: eventbus-tls\n            defaultMode: 0440", "secretName: eventbus-tls\n            defaultMode: 0444", "defaultMode (0444) lets every user read it"},
		{"k8s undefined TLS Secret", "k8s/deployment.yaml", "secretName: eventbus-tls", "secretName: eventbus-certs", `comes from Secret "eventbus-certs", which the manifests do not define`},
		{"k8s TLS Secret not of type tls", "k8s/tls.example.yaml", "type: kubernetes.io/tls", "type: Opaque", "want kubernetes.io/tls"},
		{"k8s TLS Secret without its key", "k8s/tls.example.yaml", "  tls.key: |", "  key.pem: |", `Secret eventbus-tls has no key "tls.key"`},
		{"k8s example ships a token", "k8s/admin-token.example.yaml", "token: REPLACE-with-ebt_-and-at-least-32-random-letters-or-digits", "token: ebt_0123456789abcdef0123456789abcdef", "holds a usable token"},
		{"compose insecure", "compose.yaml", "      OTEL_SERVICE_NAME: eventbus\n", "      OTEL_SERVICE_NAME: eventbus\n      EVENTBUS_INSECURE: \"true\"\n", `eventbus: EVENTBUS_INSECURE="true"`},
		{"compose plaintext", "compose.yaml", "      EVENTBUS_TLS_CERT: /etc/eventbus/tls/tls.crt\n", "", "eventbus: EVENTBUS_TLS_CERT is not set"},
		{"compose no client authentication", "compose.yaml", "      EVENTBUS_ADMIN_TOKEN_FILE: /etc/eventbus/admin-token/token\n", "", "no client authentication"},
		{"compose secrets writable", "compose.yaml", "eventbus-secrets:/etc/eventbus:ro", "eventbus-secrets:/etc/eventbus", "mounted read-write"},
		{"compose certs not awaited", "compose.yaml", "      certs:\n        condition: service_completed_successfully", "      certs:\n        condition: service_started", "which no service eventbus waits for (service_completed_successfully) writes"},
		{"compose plaintext health check", "compose.yaml", `"https://localhost:50051"`, `"http://127.0.0.1:50051"`, "want --addr https://localhost:50051 or https://127.0.0.1:50051"},
		{"compose health check without CA", "compose.yaml", `, "--ca-cert", "/etc/eventbus/tls/ca.crt"]`, "]", "no --ca-cert"},
		{"compose inherits the plaintext health check", "compose.yaml", "      test: [\"CMD\", \"/usr/local/bin/eventbus\", \"health\", \"--addr\", \"https://localhost:50051\", \"--ca-cert\", \"/etc/eventbus/tls/ca.crt\"]\n      interval: 10s\n      timeout: 3s\n      retries: 3\n      start_period: 10s\n", "      interval: 10s\n", "keeps the image's plaintext health check"},
		{"dockerfile root user", "Dockerfile", "USER 65532:65532", "USER root", "USER root"},
		{"dockerfile named user", "Dockerfile", "USER 65532:65532", "USER nonroot", "numeric uid"},
		{"dockerfile no user", "Dockerfile", "USER 65532:65532\n", "", "sets no USER"},
		{"dockerfile lint: as casing", "Dockerfile", "FROM chef AS planner", "FROM chef as planner", "FromAsCasing"},
		{"dockerfile lint: shell-form CMD", "Dockerfile", `CMD ["serve"]`, "CMD serve", "JSONArgsRecommended"},
		{"dockerfile lint: undefined ARG in FROM", "Dockerfile", "FROM rust:${RUST_VERSION}-bookworm", "FROM rust:${RUST_VERSON}-bookworm", "UndefinedArgInFrom"},
		{"dockerfile loopback listen", "Dockerfile", "ENV EVENTBUS_LISTEN=0.0.0.0:50051", "ENV EVENTBUS_LISTEN=127.0.0.1:50051", "EVENTBUS_LISTEN"},
		{"k8s port not exposed", "k8s/deployment.yaml", "containerPort: 9464", "containerPort: 9465", "port 9465 is not EXPOSEd"},
		{"compose port not exposed", "compose.yaml", `"127.0.0.1:9464:9464"`, `"127.0.0.1:9464:9465"`, "container port 9465, which the Dockerfile does not EXPOSE"},
		{"dockerfile no metrics port", "Dockerfile", "EXPOSE 50051 9464", "EXPOSE 50051", "does not EXPOSE 9464"},
		{"dockerfile data outside volume", "Dockerfile", `VOLUME ["/var/lib/eventbus"]`, `VOLUME ["/data"]`, "not inside a VOLUME"},
		{"dockerfile shell health check", "Dockerfile", `CMD ["/usr/local/bin/eventbus", "health", "--addr", "http://127.0.0.1:50051"]`, "CMD /usr/local/bin/eventbus health", "exec form"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := copyDeploy(t)
			path := filepath.Join(dir, c.file)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(data), c.old) {
				t.Fatalf("%s does not contain %q: update the case", c.file, c.old)
			}
			broken := strings.Replace(string(data), c.old, c.new, 1)
			if err := os.WriteFile(path, []byte(broken), 0o644); err != nil {
				t.Fatal(err)
			}
			r, _ := validate(dir)
			all := strings.Join(r.failures, "\n")
			if !strings.Contains(all, c.want) {
				t.Errorf("breaking %s (%q -> %q): want a failure containing %q, got:\n%s", c.file, c.old, c.new, c.want, all)
			}
		})
	}
}

// A Dockerfile that cannot be read or parsed is reported once, as itself: the cross-file
// checks that need its runtime stage (EXPOSEd ports) are skipped rather than failing every port.
func TestBrokenDockerfileReportsOnlyItself(t *testing.T) {
	cases := []struct {
		name    string
		breakIt func(path string) error
	}{
		{"missing", os.Remove},
		{"unparsable", func(path string) error { return os.WriteFile(path, []byte("FROM\n"), 0o644) }},
		{"one stage", func(path string) error {
			return os.WriteFile(path, []byte("FROM gcr.io/distroless/cc-debian12:nonroot\n"), 0o644)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := copyDeploy(t)
			if err := c.breakIt(filepath.Join(dir, "Dockerfile")); err != nil {
				t.Fatal(err)
			}
			r, _ := validate(dir)
			var dockerfile int
			for _, f := range r.failures {
				switch {
				case strings.HasPrefix(f, "Dockerfile: "):
					dockerfile++
				case strings.Contains(f, "EXPOSE"):
					t.Errorf("spurious failure from the broken Dockerfile: %s", f)
				}
			}
			if dockerfile == 0 {
				t.Errorf("no failure names the Dockerfile; got:\n%s", strings.Join(r.failures, "\n"))
			}
		})
	}
}
