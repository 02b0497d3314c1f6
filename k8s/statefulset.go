// Package k8s turns Cloud Controller's LRPs into Kubernetes objects and reads
// their state back.
package k8s

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/models"
	"github.com/iris-cf/iris/workload"
)

const (
	// Diego checks each health endpoint with a 1 s timeout and, once started,
	// every 30 s (liveness); one failed liveness check restarts the instance.
	checkTimeoutSeconds     = 1
	livenessPeriodSeconds   = 30
	startupPeriodSeconds    = 2
	readinessPeriodSeconds  = 5
	readinessFailures       = 3
	registrySecretSuffix    = "-registry"
	dockerConfigJSONAuthKey = "auths"
)

// LRPObjects are the objects one LRP becomes. RegistrySecret is nil unless the
// docker image needs credentials; RecipeSecret is nil unless the LRP runs a
// recipe; the PDB is nil for one instance or fewer; EgressPolicy is nil when
// egress policies are off.
type LRPObjects struct {
	StatefulSet         *appsv1.StatefulSet
	RegistrySecret      *corev1.Secret
	RecipeSecret        *corev1.Secret
	PodDisruptionBudget *policyv1.PodDisruptionBudget
	EgressPolicy        *networkingv1.NetworkPolicy
}

// Builder translates CC requests (LRPs, tasks) into Kubernetes objects. It
// is pure: no API calls.
type Builder struct {
	cfg config.LRP
	// recipeSource rebuilds recipe Secrets from their StatefulSets; nil:
	// they are only adopted (see OwnedObjects).
	recipeSource RecipeSource
	// uploadIdentity names the Secret the upload proxy presents (see
	// WithUploadIdentity); "": recipe pods upload directly.
	uploadIdentity string
}

// NewBuilder returns a builder for the given LRP settings.
func NewBuilder(cfg config.LRP, opts ...BuilderOption) *Builder {
	b := &Builder{cfg: cfg}
	for _, opt := range opts {
		opt(b)
	}
	return b
}

// Build returns the objects for lrp in namespace. It fails only for input
// that cannot be represented, with an InvalidRequestError.
func (b *Builder) Build(lrp *workload.DesiredLRP, namespace string) (*LRPObjects, error) {
	if err := lrp.Validate(); err != nil {
		return nil, err
	}
	name := StatefulSetName(lrp.AppName, lrp.SpaceName, lrp.ProcessGUID)
	labels := lrpLabels(lrp)

	container, err := b.appContainer(lrp)
	if err != nil {
		return nil, err
	}

	routes, err := workload.MarshalRoutes(lrp.Routes)
	if err != nil {
		return nil, err
	}
	ports, _ := json.Marshal(lrp.Ports)

	annotations := map[string]string{}
	for k, v := range lrp.UserAnnotations {
		annotations[k] = v
	}
	for k, v := range lrp.FrontAnnotations {
		annotations[k] = v
	}
	// Iris's own keys are written last so a user annotation cannot shadow them.
	annotations[AnnotationProcessGUID] = lrp.ProcessGUID
	annotations[AnnotationAppName] = lrp.AppName
	annotations[AnnotationOrgName] = lrp.OrgName
	annotations[AnnotationSpaceName] = lrp.SpaceName
	annotations[AnnotationPorts] = string(ports)
	if segment := lrp.IsolationSegment(); segment != "" {
		annotations[AnnotationIsolationSegment] = segment
	}
	if limit := lrp.Resources.LogRateLimit; limit != nil && *limit >= 0 {
		annotations[AnnotationLogRateLimit] = strconv.FormatInt(*limit, 10)
	}

	// Routes and last_updated change on every update; they stay off the pod
	// template so that an update never rolls the app's instances.
	stsAnnotations := map[string]string{
		AnnotationLastUpdated: lrp.Annotation,
		AnnotationRoutes:      routes,
	}
	for k, v := range lrp.FrontState {
		stsAnnotations[k] = v
	}
	for k, v := range annotations {
		stsAnnotations[k] = v
	}
	// The record the owned NetworkPolicy is rebuilt from (see owned.go).
	egressRules := lrp.EgressRules
	if egressRules == nil {
		egressRules = []models.SecurityGroupRule{}
	}
	recorded, err := json.Marshal(egressRules)
	if err != nil {
		return nil, models.Invalidf("egress_rules: %v", err)
	}
	stsAnnotations[AnnotationEgressRules] = string(recorded)

	podSpec := corev1.PodSpec{
		Containers:                    []corev1.Container{container},
		AutomountServiceAccountToken:  ptr.To(false),
		ServiceAccountName:            b.cfg.ServiceAccountName,
		EnableServiceLinks:            ptr.To(false),
		TerminationGracePeriodSeconds: ptr.To(b.cfg.TerminationGracePeriodSeconds),
		SecurityContext:               b.podSecurityContext(),
		Affinity:                      b.affinity(lrp),
		Tolerations:                   b.tolerations(lrp),
		Volumes:                       volumes(lrp.VolumeMounts),
	}
	// A privileged LRP (only let through where the operator allows it) runs
	// as its image's user, like a root docker image.
	b.harden(&podSpec, lrp.IsDocker() && (b.cfg.AllowRootDockerImages || lrp.Privileged))

	objects := &LRPObjects{}
	if lrp.Process.Recipe != nil {
		if objects.RecipeSecret, err = b.addRecipe(&podSpec, &podSpec.Containers[0], lrp, name, namespace, labels); err != nil {
			return nil, err
		}
	}
	if creds := lrp.RegistryCredentials; lrp.IsDocker() && creds != nil && creds.Username != "" {
		secret, err := registrySecret(name+registrySecretSuffix, namespace, labels, lrp.Process.Image, creds.Username, creds.Password)
		if err != nil {
			return nil, err
		}
		objects.RegistrySecret = secret
	}
	podSpec.ImagePullSecrets = b.pullSecrets(!lrp.IsDocker(), objects.RegistrySecret)

	selector := map[string]string{LabelGUID: labels[LabelGUID], LabelVersion: labels[LabelVersion]}
	objects.StatefulSet = &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Namespace:   namespace,
			Labels:      labels,
			Annotations: stsAnnotations,
		},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            ptr.To(lrp.Instances),
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector:            &metav1.LabelSelector{MatchLabels: selector},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
				Spec:       podSpec,
			},
			// No headless Service is created: CF apps are reached through
			// gorouter, not cluster DNS.
			ServiceName: "",
		},
	}
	objects.PodDisruptionBudget = PodDisruptionBudget(objects.StatefulSet)
	objects.EgressPolicy, err = b.egressPolicy(name, namespace, labels, selector, lrp.EgressRules)
	if err != nil {
		return nil, err
	}
	return objects, nil
}

// PodDisruptionBudget returns the PDB that keeps at least one instance up
// during voluntary disruptions, or nil when the LRP has one instance or fewer
// (a PDB there would block node drains forever).
func PodDisruptionBudget(sts *appsv1.StatefulSet) *policyv1.PodDisruptionBudget {
	if sts.Spec.Replicas == nil || *sts.Spec.Replicas <= 1 {
		return nil
	}
	return &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{
			Name:      sts.Name,
			Namespace: sts.Namespace,
			Labels:    sts.Labels,
		},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: ptr.To(intstr.FromInt32(1)),
			Selector:     sts.Spec.Selector.DeepCopy(),
		},
	}
}

// podSecurityContext runs every CF workload as the fixed non-root app user.
func (b *Builder) podSecurityContext() *corev1.PodSecurityContext {
	return &corev1.PodSecurityContext{
		RunAsNonRoot:   ptr.To(true),
		RunAsUser:      ptr.To(b.cfg.AppUID),
		RunAsGroup:     ptr.To(b.cfg.AppUID),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// containerSecurityContext takes every privilege a CF workload never needs.
func containerSecurityContext() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		RunAsNonRoot:             ptr.To(true),
		AllowPrivilegeEscalation: ptr.To(false),
		Privileged:               ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

func lrpLabels(lrp *workload.DesiredLRP) map[string]string {
	labels := map[string]string{
		LabelGUID:        sanitizeLabelValue(lrp.GUID),
		LabelVersion:     sanitizeLabelValue(lrp.Version),
		LabelAppGUID:     sanitizeLabelValue(lrp.AppGUID),
		LabelProcessType: sanitizeLabelValue(processType(lrp)),
		LabelSourceType:  SourceTypeApp,
		LabelOrgGUID:     sanitizeLabelValue(lrp.OrgGUID),
		LabelSpaceGUID:   sanitizeLabelValue(lrp.SpaceGUID),
	}
	for k, v := range labels {
		if v == "" {
			delete(labels, k)
		}
	}
	return labels
}

// processType defaults to "web": older CCs send no process_type, and every
// process they desire through OPI is the web process.
func processType(lrp *workload.DesiredLRP) string {
	if lrp.ProcessType == "" {
		return "web"
	}
	return lrp.ProcessType
}

// exposedPorts are the container ports of the StatefulSet's app container:
// the ports its instances can be routed to. The cache keeps them only in
// the ports annotation when that says the same (see portsAnnotated).
func exposedPorts(sts *appsv1.StatefulSet) []int32 {
	var ports []int32
	found := false
	for _, c := range sts.Spec.Template.Spec.Containers {
		if c.Name == AppContainerName {
			found = true
			for _, p := range c.Ports {
				ports = append(ports, p.ContainerPort)
			}
		}
	}
	if !found {
		ports, _ = annotatedPorts(sts.Annotations[AnnotationPorts])
	}
	return ports
}

// annotatedPorts are the ports AnnotationPorts lists, false if it lists
// none or is not a list of ports.
func annotatedPorts(annotation string) ([]int32, bool) {
	var ports []int32
	if err := json.Unmarshal([]byte(annotation), &ports); err != nil || len(ports) == 0 {
		return nil, false
	}
	return ports, true
}

func (b *Builder) appContainer(lrp *workload.DesiredLRP) (corev1.Container, error) {
	image, command := b.imageAndCommand(lrp.Process)
	ports := lrp.Ports
	if len(ports) == 0 {
		ports = []int32{models.DefaultPort}
	}
	containerPorts := make([]corev1.ContainerPort, 0, len(ports))
	for _, p := range ports {
		containerPorts = append(containerPorts, corev1.ContainerPort{ContainerPort: p, Protocol: corev1.ProtocolTCP})
	}

	container := corev1.Container{
		Name:            AppContainerName,
		Image:           image,
		Command:         command,
		Args:            lrp.Process.Args,
		WorkingDir:      lrp.Process.WorkingDir,
		Env:             environment(lrp.Env, ports),
		Ports:           containerPorts,
		Resources:       b.resources(lrp.Resources.MemoryMB, lrp.Resources.DiskMB, lrp.Resources.CPUWeight),
		SecurityContext: containerSecurityContext(),
		VolumeMounts:    volumeMounts(lrp.VolumeMounts),
	}
	b.addProbes(&container, lrp.HealthChecks, ports[0])
	return container, nil
}

func (b *Builder) imageAndCommand(p workload.Process) (string, []string) {
	if p.Droplet != nil {
		return b.dropletImage(&models.BuildpackLifecycle{DropletGUID: p.Droplet.GUID, DropletHash: p.Droplet.Hash}), b.launch(p.Droplet.StartCommand)
	}
	// CC sends ["/bin/sh","-c",cmd] for a custom command and [] to run
	// the image's own entrypoint.
	return p.Image, p.Command
}

// pullSecrets are the pod's imagePullSecrets: the docker image's own
// credentials, or for droplets the operator's droplet registry Secret.
func (b *Builder) pullSecrets(droplet bool, dockerSecret *corev1.Secret) []corev1.LocalObjectReference {
	switch {
	case dockerSecret != nil:
		return []corev1.LocalObjectReference{{Name: dockerSecret.Name}}
	case droplet && b.cfg.DropletRegistrySecretName != "":
		return []corev1.LocalObjectReference{{Name: b.cfg.DropletRegistrySecretName}}
	}
	return nil
}

func (b *Builder) dropletImage(bp *models.BuildpackLifecycle) string {
	return fmt.Sprintf("%s/%s:%s", strings.TrimRight(b.cfg.DropletRegistry, "/"), bp.DropletGUID, bp.DropletHash)
}

// launch runs command through Diego's launcher, which takes the app dir, the
// command and the execution metadata, and sources the buildpacks' profile.d.
func (b *Builder) launch(command string) []string {
	return []string{b.cfg.DropletLauncher, "app", command, ""}
}

func (b *Builder) resources(memoryMB, diskMB, cpuWeight int64) corev1.ResourceRequirements {
	req := corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	if memoryMB > 0 {
		// CF's megabytes are mebibytes (Garden limits memory_mb*1024*1024).
		mem := *resource.NewQuantity(memoryMB*1024*1024, resource.BinarySI)
		req.Requests[corev1.ResourceMemory] = mem
		req.Limits[corev1.ResourceMemory] = mem
	}
	if diskMB > 0 {
		disk := *resource.NewQuantity(diskMB*1024*1024, resource.BinarySI)
		req.Requests[corev1.ResourceEphemeralStorage] = disk
		req.Limits[corev1.ResourceEphemeralStorage] = disk
	}
	if cpuWeight > 0 {
		req.Requests[corev1.ResourceCPU] = *resource.NewMilliQuantity(cpuWeight*b.cfg.CPUMillicoresPerWeight, resource.DecimalSI)
	}
	return req
}

// environment returns CC's variables (sorted, so the template is stable and an
// unchanged desire never rolls pods) followed by the CF_INSTANCE_* variables
// Diego sets. Later entries may reference earlier ones with $(NAME).
func environment(ccEnv map[string]string, ports []int32) []corev1.EnvVar {
	port := strconv.Itoa(int(ports[0]))
	portMappings := make([]map[string]int32, 0, len(ports))
	for _, p := range ports {
		portMappings = append(portMappings, map[string]int32{"external": p, "internal": p})
	}
	portsJSON, _ := json.Marshal(portMappings)

	fieldRef := func(path string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}
	}
	instanceEnv := []corev1.EnvVar{
		{Name: "CF_INSTANCE_INDEX", ValueFrom: fieldRef("metadata.labels['" + PodIndexLabel + "']")},
		{Name: "INSTANCE_INDEX", Value: "$(CF_INSTANCE_INDEX)"},
		{Name: "CF_INSTANCE_GUID", ValueFrom: fieldRef("metadata.uid")},
		{Name: "INSTANCE_GUID", Value: "$(CF_INSTANCE_GUID)"},
		{Name: "CF_INSTANCE_IP", ValueFrom: fieldRef("status.hostIP")},
		{Name: "CF_INSTANCE_INTERNAL_IP", ValueFrom: fieldRef("status.podIP")},
		{Name: "CF_INSTANCE_PORT", Value: port},
		{Name: "CF_INSTANCE_ADDR", Value: "$(CF_INSTANCE_INTERNAL_IP):" + port},
		{Name: "CF_INSTANCE_PORTS", Value: string(portsJSON)},
	}
	if _, ok := ccEnv["PORT"]; !ok {
		instanceEnv = append(instanceEnv, corev1.EnvVar{Name: "PORT", Value: port})
	}
	owned := make(map[string]bool, len(instanceEnv))
	for _, e := range instanceEnv {
		owned[e.Name] = true
	}

	// Iris owns the instance variables; a CC value of the same name would be
	// stale (CC cannot know the pod), so it is dropped.
	names := make([]string, 0, len(ccEnv))
	for name := range ccEnv {
		if !owned[name] {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	env := make([]corev1.EnvVar, 0, len(names)+len(instanceEnv))
	for _, name := range names {
		env = append(env, corev1.EnvVar{Name: name, Value: ccEnv[name]})
	}
	return append(env, instanceEnv...)
}

// addProbes maps the health checks to Kubernetes probes. A startup probe
// gives the app its whole start timeout before liveness takes over, so slow
// starters are not killed, as in Diego.
func (b *Builder) addProbes(c *corev1.Container, checks workload.HealthChecks, firstPort int32) {
	liveness, readiness := checks.Liveness, checks.Readiness
	if liveness == nil && readiness == nil {
		return
	}
	if readiness == nil {
		readiness = liveness
	}
	startupCheck := liveness
	if startupCheck == nil {
		startupCheck = readiness
	}

	startTimeoutMs := checks.StartTimeoutMs
	if startTimeoutMs <= 0 {
		startTimeoutMs = b.cfg.DefaultStartTimeoutSeconds * 1000
	}
	startupFailures := int32((startTimeoutMs + startupPeriodSeconds*1000 - 1) / (startupPeriodSeconds * 1000))
	if startupFailures < 1 {
		startupFailures = 1
	}

	c.StartupProbe = &corev1.Probe{
		ProbeHandler:     probeHandler(startupCheck, firstPort),
		TimeoutSeconds:   seconds(startupCheck.TimeoutMs, checkTimeoutSeconds),
		PeriodSeconds:    startupPeriodSeconds,
		FailureThreshold: startupFailures,
	}
	if liveness != nil {
		c.LivenessProbe = &corev1.Probe{
			ProbeHandler:     probeHandler(liveness, firstPort),
			TimeoutSeconds:   seconds(liveness.TimeoutMs, checkTimeoutSeconds),
			PeriodSeconds:    seconds(liveness.IntervalMs, livenessPeriodSeconds),
			FailureThreshold: 1,
		}
	}
	// Readiness decides routability; it tolerates a brief blip so that one
	// slow response does not pull an instance out of the router.
	c.ReadinessProbe = &corev1.Probe{
		ProbeHandler:     probeHandler(readiness, firstPort),
		TimeoutSeconds:   seconds(readiness.TimeoutMs, checkTimeoutSeconds),
		PeriodSeconds:    seconds(readiness.IntervalMs, readinessPeriodSeconds),
		FailureThreshold: readinessFailures,
	}
}

func probeHandler(check *workload.HealthCheck, firstPort int32) corev1.ProbeHandler {
	port := check.Port
	if port == 0 {
		port = firstPort
	}
	if check.Type == workload.CheckHTTP {
		path := check.Path
		if path == "" {
			path = "/"
		}
		return corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(port)}}
	}
	return corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(port)}}
}

// seconds rounds ms up to whole seconds (probes count in seconds), or is
// def for 0.
func seconds(ms int64, def int32) int32 {
	if ms <= 0 {
		return def
	}
	return int32((ms + 999) / 1000)
}

// spreadInstances prefers to put the instances of one LRP on different nodes.
// affinity spreads instances over nodes and places them by isolation
// segment: an LRP with a placement tag runs only on nodes labelled with it,
// one without only on nodes without the label, as Diego places LRPs only on
// cells with exactly their placement tags.
func (b *Builder) affinity(lrp *workload.DesiredLRP) *corev1.Affinity {
	return &corev1.Affinity{
		NodeAffinity: b.segmentNodeAffinity(lrp.IsolationSegment()),
		PodAntiAffinity: &corev1.PodAntiAffinity{
			PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
				Weight: 100,
				PodAffinityTerm: corev1.PodAffinityTerm{
					TopologyKey: corev1.LabelHostname,
					LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{
						LabelGUID:    sanitizeLabelValue(lrp.GUID),
						LabelVersion: sanitizeLabelValue(lrp.Version),
					}},
				},
			}},
		},
	}
}

// tolerations let an isolated LRP onto its segment's nodes, which operators
// taint with the same key and value to keep other pods off.
func (b *Builder) tolerations(lrp *workload.DesiredLRP) []corev1.Toleration {
	return b.segmentTolerations(lrp.IsolationSegment())
}

// segmentNodeAffinity requires nodes of the isolation segment, or nodes of
// none for "" (the shared cells).
func (b *Builder) segmentNodeAffinity(segment string) *corev1.NodeAffinity {
	placement := corev1.NodeSelectorRequirement{Key: b.cfg.IsolationSegmentLabel, Operator: corev1.NodeSelectorOpDoesNotExist}
	if segment != "" {
		placement.Operator, placement.Values = corev1.NodeSelectorOpIn, []string{sanitizeLabelValue(segment)}
	}
	return &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{placement}}},
		},
	}
}

// segmentTolerations tolerate the taint of the segment's nodes (none for "").
func (b *Builder) segmentTolerations(segment string) []corev1.Toleration {
	if segment == "" {
		return nil
	}
	return []corev1.Toleration{{Key: b.cfg.IsolationSegmentLabel, Operator: corev1.TolerationOpEqual, Value: sanitizeLabelValue(segment)}}
}

func volumes(mounts []workload.VolumeMount) []corev1.Volume {
	var vols []corev1.Volume
	for _, m := range mounts {
		vols = append(vols, corev1.Volume{
			Name: m.VolumeID,
			VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: m.VolumeID},
			},
		})
	}
	return vols
}

func volumeMounts(mounts []workload.VolumeMount) []corev1.VolumeMount {
	var vms []corev1.VolumeMount
	for _, m := range mounts {
		vms = append(vms, corev1.VolumeMount{Name: m.VolumeID, MountPath: m.MountDir})
	}
	return vms
}

// registrySecret holds the docker registry credentials CC sent, in the
// dockerconfigjson form the kubelet reads for imagePullSecrets.
func registrySecret(name, namespace string, labels map[string]string, image, username, password string) (*corev1.Secret, error) {
	server := registryServer(image)
	auth := base64.StdEncoding.EncodeToString([]byte(username + ":" + password))
	config := map[string]any{dockerConfigJSONAuthKey: map[string]any{server: map[string]string{
		"username": username,
		"password": password,
		"auth":     auth,
	}}}
	data, err := json.Marshal(config)
	if err != nil {
		return nil, fmt.Errorf("encoding registry credentials: %w", err)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: data},
	}, nil
}

// registryServer returns the registry host of an image reference, following
// the docker convention: the first path element is a host only if it has a
// '.' or ':' or is "localhost"; otherwise the image lives on Docker Hub.
func registryServer(image string) string {
	first, _, found := strings.Cut(image, "/")
	if found && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return first
	}
	return "https://index.docker.io/v1/"
}
