{{/* Chart name, overridable. */}}
{{- define "iris.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every object name. */}}
{{- define "iris.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "iris.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "iris.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select Iris's pods. */}}
{{- define "iris.selectorLabels" -}}
app.kubernetes.io/name: {{ include "iris.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Iris's ServiceAccount. */}}
{{- define "iris.serviceAccountName" -}}
{{- default (include "iris.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{/* Whether a component runs (an empty list runs all). */}}
{{- define "iris.runsAPI" -}}
{{- if or (empty .Values.components) (has "api" .Values.components) }}true{{ end }}
{{- end }}

{{/* Whether Iris serves the BBS API (the api component runs it). */}}
{{- define "iris.servesBBS" -}}
{{- if and .Values.bbs.enabled (include "iris.runsAPI" .) }}true{{ end }}
{{- end }}

{{/* Whether the BBS front has Diego's BBS behind it. */}}
{{- define "iris.frontsDiego" -}}
{{- if and (include "iris.servesBBS" .) .Values.bbs.diego.url }}
{{- if not .Values.bbs.diego.clientSecret }}{{ fail "bbs.diego.clientSecret is required with bbs.diego.url (Diego's BBS requires mutual TLS)" }}{{ end -}}
true{{ end }}
{{- end }}

{{/* Iris's config file (schema: config/iris.example.yml). */}}
{{- define "iris.config" -}}
{{- $v := .Values -}}
{{- if and (include "iris.runsAPI" .) (not $v.api.tls.enabled) (not $v.api.plain.enabled) -}}
{{- fail "api: enable api.tls and/or api.plain (the api component needs a listener)" -}}
{{- end -}}
{{- $api := dict "max_request_body_bytes" $v.api.maxRequestBodyBytes "shutdown_timeout_seconds" $v.api.shutdownTimeoutSeconds "read_timeout_seconds" $v.api.readTimeoutSeconds "idle_timeout_seconds" $v.api.idleTimeoutSeconds "max_in_flight_requests" $v.api.maxInFlightRequests -}}
{{- if $v.api.plain.enabled -}}
{{- $_ := set $api "listen_address" (printf "0.0.0.0:%d" (int $v.api.plain.port)) -}}
{{- end -}}
{{- if $v.api.tls.enabled -}}
{{- $_ := set $api "tls_listen_address" (printf "0.0.0.0:%d" (int $v.api.tls.port)) -}}
{{- $_ := set $api "tls_cert_file" "/etc/iris/tls/tls.crt" -}}
{{- $_ := set $api "tls_key_file" "/etc/iris/tls/tls.key" -}}
{{- $_ := set $api "client_ca_file" "/etc/iris/cc-ca/ca.crt" -}}
{{- end -}}
{{- $irisUrl := $v.staging.irisUrl -}}
{{- if not $irisUrl -}}
{{- if $v.api.plain.enabled -}}
{{- $irisUrl = printf "http://%s.%s.svc:%d" (include "iris.fullname" .) .Release.Namespace (int $v.api.plain.port) -}}
{{- else -}}
{{- $irisUrl = printf "https://%s.%s.svc:%d" (include "iris.fullname" .) .Release.Namespace (int $v.api.tls.port) -}}
{{- end -}}
{{- end -}}
{{- $route := dict "nats_servers" $v.route.natsServers "default_register_interval_seconds" $v.route.defaultRegisterIntervalSeconds "tls_port" $v.route.tlsPort "nats_username" $v.route.natsUsername -}}
{{- if $v.secrets.natsPassword -}}
{{- if not $v.route.natsUsername -}}
{{- fail "route.natsUsername is required with secrets.natsPassword" -}}
{{- end -}}
{{- $_ := set $route "nats_password_file" "/etc/iris/nats-credentials/password" -}}
{{- end -}}
{{- if $v.secrets.natsTLS -}}
{{- $_ := set $route "nats_ca_cert_file" "/etc/iris/nats/ca.crt" -}}
{{- if $v.secrets.natsTLSClientCert -}}
{{- $_ := set $route "nats_cert_file" "/etc/iris/nats/tls.crt" -}}
{{- $_ := set $route "nats_key_file" "/etc/iris/nats/tls.key" -}}
{{- end -}}
{{- end -}}
{{- $cc := dict "internal_api_url" $v.cc.internalApiUrl "timeout_seconds" $v.cc.timeoutSeconds -}}
{{- if $v.secrets.ccClient -}}
{{- $_ := set $cc "ca_cert_file" "/etc/iris/cc/ca.crt" -}}
{{- $_ := set $cc "cert_file" "/etc/iris/cc/tls.crt" -}}
{{- $_ := set $cc "key_file" "/etc/iris/cc/tls.key" -}}
{{- end -}}
{{- $loggregator := dict "ingress_address" $v.loggregator.ingressAddress "server_name" $v.loggregator.serverName "buffer_size" $v.loggregator.bufferSize -}}
{{- if $v.loggregator.ingressAddress -}}
{{- if not $v.secrets.loggregator -}}
{{- fail "secrets.loggregator is required when loggregator.ingressAddress is set (Iris talks to Loggregator over mutual TLS only)" -}}
{{- end -}}
{{- $_ := set $loggregator "ca_cert_file" "/etc/iris/loggregator/ca.crt" -}}
{{- $_ := set $loggregator "cert_file" "/etc/iris/loggregator/tls.crt" -}}
{{- $_ := set $loggregator "key_file" "/etc/iris/loggregator/tls.key" -}}
{{- end -}}
{{- $bbs := dict "allow_privileged" $v.bbs.allowPrivileged -}}
{{- if include "iris.servesBBS" . -}}
{{- $_ := set $bbs "tls_listen_address" (printf "0.0.0.0:%d" (int $v.bbs.port)) -}}
{{- $_ := set $bbs "tls_cert_file" "/etc/iris/bbs-tls/tls.crt" -}}
{{- $_ := set $bbs "tls_key_file" "/etc/iris/bbs-tls/tls.key" -}}
{{- $_ := set $bbs "client_ca_file" "/etc/iris/bbs-client-ca/ca.crt" -}}
{{- $_ := set $bbs "stacks" $v.bbs.stacks -}}
{{- if include "iris.frontsDiego" . -}}
{{- $_ := set $bbs "diego" (dict
  "url" $v.bbs.diego.url
  "ca_file" "/etc/iris/diego-bbs/ca.crt"
  "client_cert_file" "/etc/iris/diego-bbs/tls.crt"
  "client_key_file" "/etc/iris/diego-bbs/tls.key"
  "placement_config_map" $v.bbs.diego.placementConfigMap
  "default_backend" $v.bbs.diego.defaultBackend
  "migration" (dict
    "interval_seconds" $v.bbs.diego.migration.intervalSeconds
    "max_in_flight" $v.bbs.diego.migration.maxInFlight
    "lease_name" $v.bbs.diego.migration.leaseName)) -}}
{{- end -}}
{{- end -}}
{{- $ops := dict "listen_address" (printf "0.0.0.0:%d" (int $v.ops.port)) -}}
{{- if $v.ops.admin.enabled -}}
{{- $_ := set $ops "tls_cert_file" "/etc/iris/ops-tls/tls.crt" -}}
{{- $_ := set $ops "tls_key_file" "/etc/iris/ops-tls/tls.key" -}}
{{- $_ := set $ops "client_ca_file" "/etc/iris/ops-admin-ca/ca.crt" -}}
{{- end -}}
{{- $cfg := dict
  "components" $v.components
  "log_level" $v.logLevel
  "kubeconfig" ""
  "kube_api_qps" $v.kubeApiQps
  "kube_api_burst" $v.kubeApiBurst
  "workloads_namespaces" $v.workloadsNamespaces
  "api" $api
  "bbs" $bbs
  "lrp" (dict
    "droplet_registry" $v.lrp.dropletRegistry
    "droplet_registry_secret_name" $v.lrp.dropletRegistrySecretName
    "droplet_launcher" $v.lrp.dropletLauncher
    "app_uid" $v.lrp.appUid
    "cpu_millicores_per_weight" $v.lrp.cpuMillicoresPerWeight
    "service_account_name" $v.appServiceAccount.name
    "termination_grace_period_seconds" $v.lrp.terminationGracePeriodSeconds
    "default_start_timeout_seconds" $v.lrp.defaultStartTimeoutSeconds
    "max_instances" $v.lrp.maxInstances
    "apparmor_profile" $v.lrp.apparmorProfile
    "read_only_root_filesystem" $v.lrp.readOnlyRootFilesystem
    "user_namespaces" $v.lrp.userNamespaces
    "allow_root_docker_images" $v.lrp.allowRootDockerImages
    "runner_image" (printf "%s:%s" $v.image.repository $v.image.tag)
    "runner_image_pull_policy" $v.image.pullPolicy
    "isolation_segment_label" $v.lrp.isolationSegmentLabel
    "egress_policies" (dict
      "enabled" $v.lrp.egressPolicies.enabled
      "dns_namespace" $v.lrp.egressPolicies.dnsNamespace
      "dns_pod_selector" $v.lrp.egressPolicies.dnsPodSelector))
  "staging" (dict
    "stack_image" $v.staging.stackImage
    "lifecycle_bundle_url" $v.staging.lifecycleBundleUrl
    "iris_url" $irisUrl
    "timeout_seconds" $v.staging.timeoutSeconds
    "insecure_registries" $v.staging.insecureRegistries
    "upload_identity_secret_name" $v.staging.uploadIdentitySecretName)
  "tasks" (dict
    "default_memory_mb" $v.tasks.defaultMemoryMb
    "default_disk_mb" $v.tasks.defaultDiskMb)
  "route" $route
  "cc" $cc
  "events" (dict
    "max_retries" $v.events.maxRetries
    "max_backoff_seconds" $v.events.maxBackoffSeconds
    "task_job_ttl_seconds" $v.events.taskJobTtlSeconds)
  "loggregator" $loggregator
  "metrics" (dict "interval_seconds" $v.metrics.intervalSeconds "disk_from_stats_summary" $v.metrics.diskFromStatsSummary)
  "ops" $ops
  "log_agent" (dict
    "pod_log_dir" $v.logAgent.podLogDir
    "positions_file" "/var/lib/iris-log-agent/positions.json"
    "node_name" "")
  "leader_election" (dict
    "namespace" .Release.Namespace
    "name" $v.leaderElection.name
    "route_emitter_name" $v.leaderElection.routeEmitterName
    "lease_duration_seconds" $v.leaderElection.leaseDurationSeconds
    "renew_deadline_seconds" $v.leaderElection.renewDeadlineSeconds
    "retry_period_seconds" $v.leaderElection.retryPeriodSeconds)
-}}
{{- toYaml $cfg }}
{{- end }}

{{/* Whether the log agent DaemonSet is deployed. */}}
{{- define "iris.logAgent" -}}
{{- if and .Values.logAgent.enabled .Values.loggregator.ingressAddress }}true{{ end }}
{{- end }}

{{/* Prometheus scrape annotations of the ops listener. */}}
{{- define "iris.prometheusAnnotations" -}}
{{- if .Values.ops.prometheusAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.ops.port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}
