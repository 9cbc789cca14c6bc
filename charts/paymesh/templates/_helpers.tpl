{{/*
Names, labels and the few values the chart derives rather than takes.
*/}}

{{- define "paymesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "paymesh.fullname" -}}
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

{{- define "paymesh.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels common to every object. */}}
{{- define "paymesh.labels" -}}
helm.sh/chart: {{ include "paymesh.chart" . }}
app.kubernetes.io/name: {{ include "paymesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: paymesh
{{- end }}

{{/* Selector of the gateway pods (app + sidecar + telemetryd). */}}
{{- define "paymesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "paymesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end }}

{{/* Selector of the demo orchestrator pods. */}}
{{- define "paymesh.orchestratorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "paymesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: orchestrator
{{- end }}

{{- define "paymesh.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "paymesh.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "paymesh.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{- define "paymesh.orchestratorName" -}}
{{- printf "%s-orchestrator" (include "paymesh.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Secret that holds the clients (API-key hashes). */}}
{{- define "paymesh.clientsSecretName" -}}
{{- if .Values.existingSecret }}
{{- .Values.existingSecret }}
{{- else }}
{{- printf "%s-clients" (include "paymesh.fullname" .) }}
{{- end }}
{{- end }}

{{/* The key in that Secret. */}}
{{- define "paymesh.clientsSecretKey" -}}
{{- if .Values.existingSecret }}{{ .Values.existingSecretKey }}{{ else }}clients.yaml{{ end }}
{{- end }}

{{/* The Secret that holds the admin token, and its key there. */}}
{{- define "paymesh.adminTokenSecretName" -}}
{{- if .Values.sidecar.adminToken.existingSecret }}
{{- .Values.sidecar.adminToken.existingSecret }}
{{- else }}
{{- printf "%s-admin-token" (include "paymesh.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "paymesh.adminTokenSecretKey" -}}
{{- if .Values.sidecar.adminToken.existingSecret }}{{ .Values.sidecar.adminToken.existingSecretKey }}{{ else }}admin-token{{ end }}
{{- end }}

{{/* Where the app finds the orchestration service (the default of every
     feature). */}}
{{- define "paymesh.orchestratorUrl" -}}
{{- if .Values.orchestrator.enabled }}
{{- printf "%s://%s:%d" (ternary "https" "http" .Values.orchestrator.tls.enabled) (include "paymesh.orchestratorName" .) (int .Values.orchestrator.port) }}
{{- else }}
{{- required "app.orchestratorUrl is required when orchestrator.enabled is false" .Values.app.orchestratorUrl }}
{{- end }}
{{- end }}

{{/* The demo orchestrator's TLS Secret: the operator's, or the one the
     chart generates (orchestrator-tls-secret.yaml). */}}
{{- define "paymesh.orchestratorTlsSecretName" -}}
{{- if .Values.orchestrator.tls.secretName }}
{{- .Values.orchestrator.tls.secretName }}
{{- else }}
{{- printf "%s-tls" (include "paymesh.orchestratorName" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
The app's environment for the orchestration services: the default URL, the
per-feature overrides (refund always follows charge: a refund must reach the
service that holds its charge), and the TLS files under
paymesh.path.orchestration.
*/}}
{{- define "paymesh.appOrchestrationEnv" -}}
{{- $o := .Values.app.orchestration }}
- name: PAYMESH_APP_ORCHESTRATOR
  value: {{ include "paymesh.orchestratorUrl" . | quote }}
{{- with $o.chargeUrl }}
- name: PAYMESH_APP_ORCHESTRATOR_CHARGE
  value: {{ . | quote }}
# Refunds go where their charges are.
- name: PAYMESH_APP_ORCHESTRATOR_REFUND
  value: {{ . | quote }}
{{- end }}
{{- with $o.disbursementUrl }}
- name: PAYMESH_APP_ORCHESTRATOR_DISBURSEMENT
  value: {{ . | quote }}
{{- end }}
{{- $files := include "paymesh.orchestrationTlsSources" . | fromYamlArray }}
{{- range $files }}
{{- range (.configMap | default .secret).items }}
{{- if eq .path "ca.crt" }}
- name: PAYMESH_APP_ORCHESTRATOR_CA
  value: {{ include "paymesh.path.orchestration" $ }}/ca.crt
{{- else if eq .path "tls.crt" }}
- name: PAYMESH_APP_ORCHESTRATOR_CERT
  value: {{ include "paymesh.path.orchestration" $ }}/tls.crt
{{- else if eq .path "tls.key" }}
- name: PAYMESH_APP_ORCHESTRATOR_KEY
  value: {{ include "paymesh.path.orchestration" $ }}/tls.key
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The projected-volume sources of the app's orchestration TLS files (a YAML
list, empty when there are none): the CA bundle from the ConfigMap or Secret
named in values, else the demo orchestrator's own CA when it serves TLS; the
client certificate from app.orchestration.tls.clientCertSecret, else the demo
orchestrator's Secret when it requires client certificates.
*/}}
{{- define "paymesh.orchestrationTlsSources" -}}
{{- $t := .Values.app.orchestration.tls }}
{{- $demo := and .Values.orchestrator.enabled .Values.orchestrator.tls.enabled }}
{{- $demoSecret := include "paymesh.orchestratorTlsSecretName" . }}
{{- $sources := list }}
{{- if $t.caConfigMap }}
{{- $sources = append $sources (dict "configMap" (dict "name" $t.caConfigMap "items" (list (dict "key" $t.caKey "path" "ca.crt")))) }}
{{- else if $t.caSecret }}
{{- $sources = append $sources (dict "secret" (dict "name" $t.caSecret "items" (list (dict "key" $t.caKey "path" "ca.crt")))) }}
{{- else if $demo }}
{{- $sources = append $sources (dict "secret" (dict "name" $demoSecret "items" (list (dict "key" "ca.crt" "path" "ca.crt")))) }}
{{- end }}
{{- $client := $t.clientCertSecret }}
{{- if and (not $client) $demo .Values.orchestrator.tls.clientAuth }}
{{- $client = $demoSecret }}
{{- end }}
{{- if $client }}
{{- $sources = append $sources (dict "secret" (dict "name" $client "items" (list (dict "key" "tls.crt" "path" "tls.crt") (dict "key" "tls.key" "path" "tls.key")))) }}
{{- end }}
{{- toYaml $sources }}
{{- end }}

{{/*
The projected-volume sources of the etcd files under paymesh.path.etcd (a
YAML list, empty without TLS and auth): ca.crt and the optional client
tls.crt/tls.key from etcd.tls.existingSecret, password from
etcd.auth.existingSecret.
*/}}
{{- define "paymesh.etcdSources" -}}
{{- $e := .Values.etcd }}
{{- $sources := list }}
{{- if $e.tls.existingSecret }}
{{- $items := list (dict "key" $e.tls.caKey "path" "ca.crt") }}
{{- if $e.tls.certKey }}
{{- $items = append $items (dict "key" $e.tls.certKey "path" "tls.crt") }}
{{- $items = append $items (dict "key" (required "etcd.tls.keyKey is required with etcd.tls.certKey" $e.tls.keyKey) "path" "tls.key") }}
{{- end }}
{{- $sources = append $sources (dict "secret" (dict "name" $e.tls.existingSecret "items" $items)) }}
{{- end }}
{{- if $e.auth.username }}
{{- $secret := required "etcd.auth.existingSecret (the password) is required with etcd.auth.username" $e.auth.existingSecret }}
{{- $sources = append $sources (dict "secret" (dict "name" $secret "items" (list (dict "key" $e.auth.existingSecretKey "path" "password")))) }}
{{- end }}
{{- toYaml $sources }}
{{- end }}

{{/*
Mount paths. The sidecar YAML names files under these directories, so they
are fixed by the chart rather than taken from values.
*/}}
{{- define "paymesh.path.base" -}}/etc/paymesh/base{{- end }}
{{- define "paymesh.path.clients" -}}/etc/paymesh/clients{{- end }}
{{- define "paymesh.path.config" -}}/etc/paymesh/config{{- end }}
{{- define "paymesh.path.tls" -}}/etc/paymesh/tls{{- end }}
{{- define "paymesh.path.admin" -}}/etc/paymesh/admin{{- end }}
{{- define "paymesh.path.etcd" -}}/etc/paymesh/etcd{{- end }}
{{- define "paymesh.path.orchestration" -}}/etc/paymesh/orchestration{{- end }}
{{- define "paymesh.path.orchestratorTls" -}}/etc/paymesh-orchestrator/tls{{- end }}
{{- define "paymesh.path.state" -}}/var/lib/paymesh{{- end }}
{{- define "paymesh.path.run" -}}/run/paymesh{{- end }}
{{- define "paymesh.path.appSocket" -}}/run/paymesh-app{{- end }}
{{- define "paymesh.path.data" -}}/var/lib/paymesh-orchestrator{{- end }}

{{/*
A duration of the form the schema allows for drain_timeout ("20s", "1500ms",
"2m") in whole seconds, rounded up.
*/}}
{{- define "paymesh.durationSeconds" -}}
{{- $d := toString . }}
{{- if hasSuffix "ms" $d }}
{{- div (add (trimSuffix "ms" $d | int) 999) 1000 }}
{{- else if hasSuffix "s" $d }}
{{- trimSuffix "s" $d | int }}
{{- else if hasSuffix "m" $d }}
{{- mul (trimSuffix "m" $d | int) 60 }}
{{- else }}
{{- fail (printf "sidecar.config.limits.drain_timeout: %q is not a duration like 20s, 1500ms or 2m" $d) }}
{{- end }}
{{- end }}

{{/*
The sidecar YAML without `clients` (those live in the Secret and are appended
by the config init container). Keys the chart owns win over values.
*/}}
{{- define "paymesh.sidecarConfig" -}}
{{- $c := .Values.sidecar.config }}
{{- $cfg := dict
  "listen" (printf "%s:%d" .Values.sidecar.listenHost (int .Values.sidecar.port))
  "app" (include "paymesh.appAddress" .)
  "admin" (dict
      "listen" (printf "%s:%d" .Values.sidecar.adminHost (int .Values.sidecar.adminPort))
      "token_file" (printf "%s/token" (include "paymesh.path.admin" .)))
  "limits" (deepCopy $c.limits)
  "migration" (merge (dict "cache_file" (printf "%s/migration.json" (include "paymesh.path.state" .))) (deepCopy $c.migration))
  "overload" (merge (dict
      "telemetry_file" (printf "%s/telemetry.json" (include "paymesh.path.run" .))
      "events_file" (printf "%s/switch-events.jsonl" (include "paymesh.path.state" .))) (deepCopy $c.overload))
  "access_log" (deepCopy $c.access_log)
  "fleet" (deepCopy ($c.fleet | default dict))
  "metrics" (deepCopy ($c.metrics | default dict))
}}
{{- $e := .Values.etcd }}
{{- if $e.tls.existingSecret }}
{{- $etls := dict "ca" (printf "%s/ca.crt" (include "paymesh.path.etcd" .)) }}
{{- if $e.tls.certKey }}
{{- $_ := set $etls "cert" (printf "%s/tls.crt" (include "paymesh.path.etcd" .)) }}
{{- $_ := set $etls "key" (printf "%s/tls.key" (include "paymesh.path.etcd" .)) }}
{{- end }}
{{- $_ := set $cfg.migration "etcd_tls" $etls }}
{{- end }}
{{- if $e.auth.username }}
{{- $_ := set $cfg.migration "etcd_auth" (dict "username" $e.auth.username "password_file" (printf "%s/password" (include "paymesh.path.etcd" .))) }}
{{- end }}
{{- $sh := .Values.shadow }}
{{- $_ := set $cfg "shadow" (dict
  "sample_percent" $sh.samplePercent
  "max_inflight" $sh.maxInflight
  "timeout" $sh.timeout
  "ignore_fields" ($sh.ignoreFields | default list)) }}
{{- with .Values.tracing }}
{{- if .otlpEndpoint }}
{{- $_ := set $cfg "tracing" (dict "otlp_endpoint" .otlpEndpoint "protocol" .protocol "sample_ratio" .sampleRatio) }}
{{- end }}
{{- end }}
{{- if .Values.sidecar.tls.enabled }}
{{- $_ := required "sidecar.tls.secretName is required when sidecar.tls.enabled is true" .Values.sidecar.tls.secretName }}
{{- $tls := dict
  "cert" (printf "%s/tls.crt" (include "paymesh.path.tls" .))
  "key" (printf "%s/tls.key" (include "paymesh.path.tls" .)) }}
{{- if .Values.sidecar.tls.clientAuth }}
{{- $_ := set $tls "client_ca" (printf "%s/ca.crt" (include "paymesh.path.tls" .)) }}
{{- end }}
{{- $_ := set $cfg "tls" $tls }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
The OTLP exporter environment of the app and the orchestrator (the standard
OpenTelemetry variables), when tracing.otlpEndpoint is set. No sampler
variable: both follow the sidecar's sampling decision (parent-based).
*/}}
{{- define "paymesh.otlpEnv" -}}
{{- with .Values.tracing.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ ternary "http/protobuf" "grpc" (eq $.Values.tracing.protocol "http") | quote }}
{{- end }}
{{- end }}

{{/* The TCP port of tracing.otlpEndpoint: its own, else the scheme's. */}}
{{- define "paymesh.otlpPort" -}}
{{- $u := urlParse .Values.tracing.otlpEndpoint }}
{{- $port := regexFind ":[0-9]+$" $u.host | trimPrefix ":" }}
{{- if $port }}{{ $port }}{{ else if eq $u.scheme "https" }}443{{ else }}80{{ end }}
{{- end }}

{{/* The public port's name: the protocol, for meshes and humans alike. */}}
{{- define "paymesh.publicPortName" -}}
{{- if .Values.sidecar.tls.enabled }}https{{ else }}http{{ end }}
{{- end }}

{{/* The app's address: its --listen (PAYMESH_APP_LISTEN) and the sidecar's
     `app`. With app.transport unix, a socket on the app-socket volume, which
     only the app and the sidecar mount: nothing else in the pod can reach
     the app. With tcp, loopback. */}}
{{- define "paymesh.appAddress" -}}
{{- if eq .Values.app.transport "unix" }}
{{- printf "unix:%s/app.sock" (include "paymesh.path.appSocket" .) }}
{{- else }}
{{- printf "127.0.0.1:%d" (int .Values.app.port) }}
{{- end }}
{{- end }}

{{/* The app's probe command, given the probe's values. The kubelet's
     httpGet reaches neither loopback nor a socket, and the image has no
     curl: `paymesh-app --probe` GETs /healthz at PAYMESH_APP_LISTEN (the
     container's own environment) and passes on a 200, giving up a second
     before the kubelet would (its timeoutSeconds, Kubernetes' default 1)
     so that the reason is in the probe's output. */}}
{{- define "paymesh.appProbeCommand" -}}
- paymesh-app
- --probe
- --probe-timeout={{ max 1 (sub (int (.timeoutSeconds | default 1)) 1) }}s
{{- end }}
