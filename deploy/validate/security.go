package main

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The files the server reads its key pair, client CA and bootstrap admin token from.
const (
	envTLSCert    = "EVENTBUS_TLS_CERT"
	envTLSKey     = "EVENTBUS_TLS_KEY"
	envClientCA   = "EVENTBUS_TLS_CLIENT_CA"
	envAdminToken = "EVENTBUS_ADMIN_TOKEN_FILE"
	envInsecure   = "EVENTBUS_INSECURE"
)

// wellFormedToken is the server's token shape (server/src/security/tokens.rs): an example that
// matches it would ship a usable admin credential.
var wellFormedToken = regexp.MustCompile(`^ebt_[A-Za-z0-9_-]{32,}$`)

// checkProtection checks that a deployment serves with TLS and client authentication rather
// than --insecure: the key pair set, and a bootstrap admin token or a client CA. lookup returns
// a variable the deployment sets; file checks where one of the files comes from.
func checkProtection(r *report, file, who string, args []string, lookup func(string) (string, bool), checkFile func(env, path string)) {
	if v, ok := lookup(envInsecure); ok {
		r.failf(file, "%s: %s=%q: serve with TLS and client authentication instead", who, envInsecure, v)
	}
	if slices.ContainsFunc(args, func(a string) bool { return a == "--insecure" || strings.HasPrefix(a, "--insecure=") }) {
		r.failf(file, "%s: runs with --insecure: serve with TLS and client authentication instead", who)
	}
	for _, env := range []string{envTLSCert, envTLSKey} {
		if v, ok := lookup(env); !ok || v == "" {
			r.failf(file, "%s: %s is not set: the server would refuse to start without TLS", who, env)
		}
	}
	_, token := lookup(envAdminToken)
	_, clientCA := lookup(envClientCA)
	if !token && !clientCA {
		r.failf(file, "%s: neither %s nor %s is set: no client authentication", who, envAdminToken, envClientCA)
	}
	for _, env := range []string{envTLSCert, envTLSKey, envClientCA, envAdminToken} {
		if v, ok := lookup(env); ok && v != "" {
			checkFile(env, v)
		}
	}
}

// secretFile is where a file of the container comes from: a key of a Secret.
type secretFile struct {
	secret, key string
}

// checkSecretFiles checks that the server's files come from Secrets mounted whole and
// read-only (a subPath mount is never updated, so a rotated Secret would not reach the pod),
// that the manifests define those Secrets with those keys, that the key pair comes from a
// kubernetes.io/tls Secret and that an example admin token is no usable token.
func checkSecretFiles(r *report, cname string, pod corev1.PodSpec, c corev1.Container, secrets map[string]*corev1.Secret) {
	const file = "k8s"
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	lookup := func(k string) (string, bool) { e, ok := env[k]; return e.Value, ok }
	checkProtection(r, file, cname, append(slices.Clone(c.Command), c.Args...), lookup, func(name, p string) {
		from, err := mountedSecretFile(pod, c, p)
		if err != nil {
			r.failf(file, "%s: %s=%s %v", cname, name, p, err)
			return
		}
		s, ok := secrets[from.secret]
		if !ok {
			r.failf(file, "%s: %s comes from Secret %q, which the manifests do not define", cname, name, from.secret)
			return
		}
		value, ok := secretValue(s, from.key)
		if !ok {
			r.failf(file, "%s: %s: Secret %s has no key %q", cname, name, from.secret, from.key)
		}
		if (name == envTLSCert || name == envTLSKey) && s.Type != corev1.SecretTypeTLS {
			r.failf(file, "%s: %s: Secret %s is of type %q, want %s (what `kubectl create secret tls` and cert-manager make)",
				cname, name, s.Name, s.Type, corev1.SecretTypeTLS)
		}
		if name == envAdminToken && wellFormedToken.MatchString(strings.TrimSpace(value)) {
			r.failf(file, "Secret %s key %s holds a usable token: manifests must not ship an admin credential", s.Name, from.key)
		}
	})
}

func secretValue(s *corev1.Secret, key string) (string, bool) {
	if v, ok := s.StringData[key]; ok {
		return v, true
	}
	b, ok := s.Data[key]
	return string(b), ok
}

// mountedSecretFile returns the Secret key that the container sees at path p.
func mountedSecretFile(pod corev1.PodSpec, c corev1.Container, p string) (secretFile, error) {
	var mount *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		inside := p == m.MountPath || strings.HasPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/")
		if inside && (mount == nil || len(m.MountPath) > len(mount.MountPath)) {
			mount = &c.VolumeMounts[i]
		}
	}
	switch {
	case mount == nil:
		return secretFile{}, fmt.Errorf("is in no mounted volume: mount the Secret that holds it")
	case mount.SubPath != "" || mount.SubPathExpr != "":
		return secretFile{}, fmt.Errorf("comes from a subPath mount of volume %s: such a mount never sees an updated Secret; mount the whole Secret", mount.Name)
	case !mount.ReadOnly:
		return secretFile{}, fmt.Errorf("is in volume mount %s, which is not readOnly", mount.Name)
	}
	rel := strings.TrimPrefix(p, strings.TrimSuffix(mount.MountPath, "/")+"/")
	i := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == mount.Name })
	if i < 0 {
		return secretFile{}, fmt.Errorf("is in volume %s, which the pod does not define", mount.Name)
	}
	v := pod.Volumes[i]
	if err := checkMode(v); err != nil {
		return secretFile{}, err
	}
	switch {
	case v.Secret != nil:
		if key, ok := keyAt(v.Secret.Items, rel); ok {
			return secretFile{secret: v.Secret.SecretName, key: key}, nil
		}
	case v.Projected != nil:
		for _, src := range v.Projected.Sources {
			if src.Secret == nil {
				continue
			}
			if key, ok := keyAt(src.Secret.Items, rel); ok {
				return secretFile{secret: src.Secret.Name, key: key}, nil
			}
		}
	default:
		return secretFile{}, fmt.Errorf("is in volume %s, which is not a Secret", v.Name)
	}
	return secretFile{}, fmt.Errorf("is no file of volume %s (its items do not map a key to %s)", v.Name, rel)
}

// checkMode refuses a Secret volume whose files other users may read: the API's default mode is
// 0644; the pod's fsGroup lets 0440 reach the server.
func checkMode(v corev1.Volume) error {
	var mode *int32
	switch {
	case v.Secret != nil:
		mode = v.Secret.DefaultMode
	case v.Projected != nil:
		mode = v.Projected.DefaultMode
	default:
		return nil
	}
	if mode == nil || *mode&0o007 != 0 {
		shown := "unset, 0644"
		if mode != nil {
			shown = fmt.Sprintf("%#o", *mode)
		}
		return fmt.Errorf("is in volume %s, whose defaultMode (%s) lets every user read it: use 0440 with the pod's fsGroup", v.Name, shown)
	}
	return nil
}

// keyAt returns the Secret key a volume shows at rel: the item mapped there, or with no items
// every key at its own name.
func keyAt(items []corev1.KeyToPath, rel string) (string, bool) {
	if len(items) == 0 {
		return rel, !strings.Contains(rel, "/")
	}
	for _, it := range items {
		if path.Clean(it.Path) == rel {
			return it.Key, true
		}
	}
	return "", false
}

// checkProbes checks the container's probes: kubelet's grpc probes speak plaintext only, so
// with TLS they must be httpGet probes over HTTPS on the HTTP listener: startup and liveness on
// /healthz (alive while the process serves), readiness on /readyz (503 without a database and
// while draining).
func checkProbes(r *report, cname string, c corev1.Container, ports map[string]int32) {
	const file = "k8s"
	for _, p := range []struct {
		what  string
		probe *corev1.Probe
		path  string
	}{
		{"startupProbe", c.StartupProbe, "/healthz"},
		{"livenessProbe", c.LivenessProbe, "/healthz"},
		{"readinessProbe", c.ReadinessProbe, "/readyz"},
	} {
		switch {
		case p.probe == nil:
			r.failf(file, "%s: no %s", cname, p.what)
			continue
		case p.probe.HTTPGet == nil:
			r.failf(file, "%s: %s must be an httpGet probe over HTTPS on the HTTP port (kubelet's grpc probes cannot speak TLS)", cname, p.what)
			continue
		}
		get := p.probe.HTTPGet
		if get.Scheme != corev1.URISchemeHTTPS {
			r.failf(file, "%s: %s has scheme %q, want HTTPS (the server speaks only TLS)", cname, p.what, get.Scheme)
		}
		if port := probePort(get.Port, ports); port != metricsPort {
			r.failf(file, "%s: %s asks port %s, the HTTP listener is on %d", cname, p.what, get.Port.String(), metricsPort)
		}
		if get.Path != p.path {
			r.failf(file, "%s: %s asks %q, want %q", cname, p.what, get.Path, p.path)
		}
	}
}

func probePort(port intstr.IntOrString, ports map[string]int32) int32 {
	if port.Type == intstr.String {
		return ports[port.StrVal]
	}
	return port.IntVal
}

// checkComposeProtection checks that eventbus serves with TLS and client authentication, its
// files in volumes mounted read-only that a one-shot service it waits for fills (or bind
// mounts), and that its health check speaks TLS.
func checkComposeProtection(r *report, project *types.Project, eb types.ServiceConfig) {
	const file = "compose.yaml"
	env := eb.Environment.ToMapping()
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	args := append(slices.Clone([]string(eb.Entrypoint)), eb.Command...)
	checkProtection(r, file, "eventbus", args, lookup, func(name, p string) {
		if err := composeFileSource(project, eb, p); err != nil {
			r.failf(file, "eventbus %s=%s %v", name, p, err)
		}
	})
	hc := eb.HealthCheck
	if hc == nil || !hc.Disable && len(hc.Test) == 0 {
		r.failf(file, "eventbus serves TLS but keeps the image's plaintext health check: give it a healthcheck with --addr https://localhost:%d and --ca-cert", grpcPort)
		return
	}
	if len(hc.Test) < 2 {
		return // reported by the health check rules
	}
	cmd := hc.Test[1:]
	if i := slices.Index(cmd, "--ca-cert"); i < 0 || i+1 >= len(cmd) {
		r.failf(file, "eventbus health check %q: no --ca-cert, so it trusts only the system's roots", cmd)
	} else if err := composeFileSource(project, eb, cmd[i+1]); err != nil {
		r.failf(file, "eventbus health check --ca-cert %s %v", cmd[i+1], err)
	}
}

// composeFileSource checks where a file of the eventbus container comes from: a volume mounted
// read-only, either bound from the host or a named volume that a service eventbus waits for
// (service_completed_successfully) writes.
func composeFileSource(project *types.Project, eb types.ServiceConfig, p string) error {
	var mount *types.ServiceVolumeConfig
	for i, v := range eb.Volumes {
		if strings.HasPrefix(p, strings.TrimSuffix(v.Target, "/")+"/") && (mount == nil || len(v.Target) > len(mount.Target)) {
			mount = &eb.Volumes[i]
		}
	}
	switch {
	case mount == nil:
		return fmt.Errorf("is in no volume of the service")
	case !mount.ReadOnly:
		return fmt.Errorf("is in volume %s mounted read-write: mount it read-only (:ro)", mount.Source)
	case mount.Type != types.VolumeTypeVolume:
		return nil
	}
	for dep, d := range eb.DependsOn {
		if d.Condition != types.ServiceConditionCompletedSuccessfully {
			continue
		}
		if slices.ContainsFunc(project.Services[dep].Volumes, func(v types.ServiceVolumeConfig) bool {
			return v.Type == types.VolumeTypeVolume && v.Source == mount.Source && !v.ReadOnly
		}) {
			return nil
		}
	}
	return fmt.Errorf("is in volume %s, which no service eventbus waits for (service_completed_successfully) writes", mount.Source)
}
