package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	kyamlutil "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// object is one decoded manifest document.
type object struct {
	file string
	kind string
	name string
	obj  runtime.Object
}

func strictDecoder() runtime.Decoder {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	return kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme,
		kjson.SerializerOptions{Yaml: true, Strict: true})
}

// decode strict-decodes one YAML document: unknown, misspelled and duplicate fields, wrong
// types and kinds outside core/v1, apps/v1 and policy/v1 all fail.
func decode(r *report, dec runtime.Decoder, file string, doc []byte) (object, bool) {
	obj, gvk, err := dec.Decode(doc, nil, nil)
	if err != nil {
		r.failf(file, "%v", err)
		return object{}, false
	}
	m, err := metaOf(obj)
	if err != nil {
		r.failf(file, "%v", err)
		return object{}, false
	}
	return object{file: file, kind: gvk.Kind, name: m.GetName(), obj: obj}, true
}

func metaOf(obj runtime.Object) (metav1.Object, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%T has no object metadata", obj)
	}
	return m, nil
}

// splitDocuments returns the non-empty YAML documents of a file.
func splitDocuments(data []byte) ([][]byte, error) {
	reader := kyamlutil.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		var v any
		if err := yaml.Unmarshal(doc, &v); err != nil {
			return nil, err
		}
		if v != nil {
			docs = append(docs, doc)
		}
	}
}

// checkKubernetes strict-decodes each manifest file as written, builds the kustomization the
// way `kubectl apply -k` would and strict-decodes its output, then checks what the deployment
// relies on.
func checkKubernetes(r *report, dir string, img image) []object {
	dec := strictDecoder()
	rel := func(p string) string { return filepath.Join("k8s", p) }

	// Every file as written (kustomize would merge duplicate keys silently).
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		r.failf("k8s", "no manifests in %s (%v)", dir, err)
		return nil
	}
	listed := map[string]bool{}
	// *.example.yaml files are applied by hand after editing (the example Secret): they stay out
	// of the kustomization, so applying it never overwrites the real one, but are checked too.
	var examples []object
	for _, f := range files {
		base := filepath.Base(f)
		data, err := os.ReadFile(f)
		if err != nil {
			r.failf(rel(base), "%v", err)
			continue
		}
		if base == "kustomization.yaml" {
			var k struct {
				Namespace string   `json:"namespace"`
				Resources []string `json:"resources"`
			}
			if err := yaml.Unmarshal(data, &k); err != nil {
				r.failf(rel(base), "%v", err)
			}
			if k.Namespace != "" {
				r.failf(rel(base), "sets namespace %q: the manifests must stay namespace-agnostic", k.Namespace)
			}
			for _, res := range k.Resources {
				listed[res] = true
			}
			continue
		}
		docs, err := splitDocuments(data)
		if err != nil {
			r.failf(rel(base), "%v", err)
			continue
		}
		for _, doc := range docs {
			if o, ok := decode(r, dec, rel(base), doc); ok {
				if m, _ := metaOf(o.obj); m.GetNamespace() != "" {
					r.failf(o.file, "%s/%s sets namespace %q: the manifests must stay namespace-agnostic", o.kind, o.name, m.GetNamespace())
				}
				if isExample(base) {
					examples = append(examples, o)
				}
			}
		}
	}
	for _, f := range files {
		base := filepath.Base(f)
		switch {
		case isExample(base) && listed[base]:
			r.failf(rel("kustomization.yaml"), "lists %s: applying the kustomization would overwrite the real object with the example", base)
		case base != "kustomization.yaml" && !isExample(base) && !listed[base]:
			r.failf(rel("kustomization.yaml"), "does not list %s", base)
		}
	}

	// What `kubectl apply -k` applies.
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		r.failf(rel("kustomization.yaml"), "kustomize build: %v", err)
		return nil
	}
	var objs []object
	for _, res := range resMap.Resources() {
		doc, err := res.AsYAML()
		if err != nil {
			r.failf(rel("kustomization.yaml"), "%v", err)
			continue
		}
		if o, ok := decode(r, dec, rel("kustomization.yaml")+" output", doc); ok {
			objs = append(objs, o)
		}
	}
	objs = append(objs, examples...)
	checkObjects(r, objs, img)
	return objs
}

func isExample(base string) bool { return strings.HasSuffix(base, ".example.yaml") }

func checkObjects(r *report, objs []object, img image) {
	var (
		deployments []*appsv1.Deployment
		services    []*corev1.Service
		pdbs        []*policyv1.PodDisruptionBudget
		secrets     = map[string]*corev1.Secret{}
	)
	for _, o := range objs {
		for _, msg := range validation.IsDNS1123Subdomain(o.name) {
			r.failf(o.file, "%s name %q: %s", o.kind, o.name, msg)
		}
		switch v := o.obj.(type) {
		case *appsv1.Deployment:
			deployments = append(deployments, v)
		case *corev1.Service:
			services = append(services, v)
		case *policyv1.PodDisruptionBudget:
			pdbs = append(pdbs, v)
		case *corev1.Secret:
			secrets[v.Name] = v
		default:
			r.failf(o.file, "unexpected kind %s", o.kind)
		}
	}
	const file = "k8s"
	if len(deployments) != 1 || len(services) != 1 || len(pdbs) != 1 {
		r.failf(file, "want one Deployment, one Service and one PodDisruptionBudget; got %d, %d, %d",
			len(deployments), len(services), len(pdbs))
		return
	}
	d := deployments[0]
	podLabels := labels.Set(d.Spec.Template.Labels)
	checkDeployment(r, d, secrets, img)

	s := services[0]
	if s.Spec.Type != corev1.ServiceTypeClusterIP && s.Spec.Type != "" {
		r.failf(file, "Service %s is %s, want ClusterIP", s.Name, s.Spec.Type)
	}
	if len(s.Spec.Selector) == 0 || !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) {
		r.failf(file, "Service %s selector %v does not select the Deployment's pods %v", s.Name, s.Spec.Selector, podLabels)
	}
	servicePorts := map[int32]bool{}
	for _, p := range s.Spec.Ports {
		servicePorts[p.Port] = true
		if !containerHasPort(d.Spec.Template.Spec.Containers, p.TargetPort) {
			r.failf(file, "Service %s port %s: targetPort %s is no container port", s.Name, p.Name, p.TargetPort.String())
		}
	}
	for _, p := range []int32{grpcPort, metricsPort} {
		if !servicePorts[p] {
			r.failf(file, "Service %s does not serve port %d", s.Name, p)
		}
	}

	p := pdbs[0]
	sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
	if err != nil || p.Spec.Selector == nil || sel.Empty() || !sel.Matches(podLabels) {
		r.failf(file, "PodDisruptionBudget %s selector does not select the Deployment's pods %v (%v)", p.Name, podLabels, err)
	}
	switch {
	case p.Spec.MinAvailable == nil && p.Spec.MaxUnavailable == nil:
		r.failf(file, "PodDisruptionBudget %s sets neither minAvailable nor maxUnavailable", p.Name)
	case p.Spec.MinAvailable != nil && p.Spec.MinAvailable.Type == intstr.Int && d.Spec.Replicas != nil &&
		p.Spec.MinAvailable.IntVal >= *d.Spec.Replicas:
		r.failf(file, "PodDisruptionBudget %s minAvailable %d >= replicas %d: no node could ever be drained",
			p.Name, p.Spec.MinAvailable.IntVal, *d.Spec.Replicas)
	case p.Spec.MaxUnavailable != nil && p.Spec.MaxUnavailable.Type == intstr.Int && p.Spec.MaxUnavailable.IntVal < 1:
		r.failf(file, "PodDisruptionBudget %s maxUnavailable %d: no node could ever be drained", p.Name, p.Spec.MaxUnavailable.IntVal)
	}
}

func containerHasPort(cs []corev1.Container, target intstr.IntOrString) bool {
	for _, c := range cs {
		for _, p := range c.Ports {
			if (target.Type == intstr.String && p.Name == target.StrVal) ||
				(target.Type == intstr.Int && p.ContainerPort == target.IntVal) {
				return true
			}
		}
	}
	return false
}

func checkDeployment(r *report, d *appsv1.Deployment, secrets map[string]*corev1.Secret, img image) {
	const file = "k8s"
	name := "Deployment " + d.Name
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		r.failf(file, "%s: want replicas >= 2 (several servers on one Postgres), got %v", name, d.Spec.Replicas)
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		r.failf(file, "%s: selector does not match the pod template labels (%v)", name, err)
	}
	pod := d.Spec.Template.Spec
	if pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds < 10 {
		r.failf(file, "%s: terminationGracePeriodSeconds must be set (>= 10) so the server can drain", name)
	}
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		r.failf(file, "%s: pod securityContext.runAsNonRoot must be true", name)
	}
	if psc != nil && psc.RunAsUser != nil && img.uid >= 0 && *psc.RunAsUser != img.uid {
		r.failf(file, "%s: runAsUser %d differs from the image's USER %d", name, *psc.RunAsUser, img.uid)
	}
	if len(pod.Containers) != 1 {
		r.failf(file, "%s: want one container, got %d", name, len(pod.Containers))
		return
	}
	c := pod.Containers[0]
	cname := fmt.Sprintf("%s container %s", name, c.Name)
	if c.Image == "" {
		r.failf(file, "%s: no image", cname)
	}

	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
		if img.exposed != nil && !img.exposed[int(p.ContainerPort)] {
			r.failf(file, "%s: port %d is not EXPOSEd by the Dockerfile", cname, p.ContainerPort)
		}
	}
	if ports["grpc"] != grpcPort || ports["metrics"] != metricsPort {
		r.failf(file, "%s: want ports grpc=%d and metrics=%d, got %v", cname, grpcPort, metricsPort, ports)
	}

	checkProbes(r, cname, c, ports)
	checkSecretFiles(r, cname, pod, c, secrets)

	for _, kind := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := c.Resources.Requests[kind]
		lim, hasLim := c.Resources.Limits[kind]
		if !hasReq || !hasLim {
			r.failf(file, "%s: resources must set both a %s request and a %s limit", cname, kind, kind)
			continue
		}
		if req.Cmp(lim) > 0 {
			r.failf(file, "%s: %s request %s exceeds its limit %s", cname, kind, req.String(), lim.String())
		}
	}

	sc := c.SecurityContext
	switch {
	case sc == nil:
		r.failf(file, "%s: no securityContext", cname)
	default:
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			r.failf(file, "%s: securityContext.readOnlyRootFilesystem must be true", cname)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			r.failf(file, "%s: securityContext.allowPrivilegeEscalation must be false", cname)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			r.failf(file, "%s: securityContext.capabilities must drop ALL and add none", cname)
		}
		if sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot || sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			r.failf(file, "%s: the container securityContext overrides runAsNonRoot", cname)
		}
	}

	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	db, ok := env["EVENTBUS_DATABASE_URL"]
	switch {
	case !ok:
		r.failf(file, "%s: EVENTBUS_DATABASE_URL is not set (the server would fall back to SQLite on a read-only filesystem)", cname)
	case db.Value != "" || db.ValueFrom == nil || db.ValueFrom.SecretKeyRef == nil:
		r.failf(file, "%s: EVENTBUS_DATABASE_URL must come from a secretKeyRef, not a literal", cname)
	default:
		ref := db.ValueFrom.SecretKeyRef
		s, ok := secrets[ref.Name]
		if !ok {
			r.failf(file, "%s: EVENTBUS_DATABASE_URL refers to Secret %q, which the manifests do not define", cname, ref.Name)
			break
		}
		url, inString := s.StringData[ref.Key]
		if !inString {
			b, inData := s.Data[ref.Key]
			if !inData {
				r.failf(file, "%s: Secret %s has no key %q", cname, ref.Name, ref.Key)
				break
			}
			url = string(b)
		}
		if !strings.HasPrefix(url, "postgres://") && !strings.HasPrefix(url, "postgresql://") {
			r.failf(file, "Secret %s key %s: want a postgres:// URL (replicas share one Postgres), got %q", ref.Name, ref.Key, url)
		}
	}
	checkAddrOverrides(r, file, cname, func(k string) (string, bool) { e, ok := env[k]; return e.Value, ok })
	for _, v := range []string{"OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		if env[v].Value == "" {
			r.failf(file, "%s: %s is not set", cname, v)
		}
	}
}
