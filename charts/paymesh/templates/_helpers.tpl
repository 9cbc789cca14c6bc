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

{{/* Where the app finds the orchestration service. */}}
{{- define "paymesh.orchestratorUrl" -}}
{{- if .Values.orchestrator.enabled }}
{{- printf "http://%s:%d" (include "paymesh.orchestratorName" .) (int .Values.orchestrator.port) }}
{{- else }}
{{- required "app.orchestratorUrl is required when orchestrator.enabled is false" .Values.app.orchestratorUrl }}
{{- end }}
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
{{- define "paymesh.path.state" -}}/var/lib/paymesh{{- end }}
{{- define "paymesh.path.run" -}}/run/paymesh{{- end }}
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
  "app" (printf "127.0.0.1:%d" (int .Values.app.port))
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
}}
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

{{/* The public port's name: the protocol, for meshes and humans alike. */}}
{{- define "paymesh.publicPortName" -}}
{{- if .Values.sidecar.tls.enabled }}https{{ else }}http{{ end }}
{{- end }}

{{/* The app's probe command. The app listens on loopback only, where the
     kubelet's httpGet cannot reach; this asks its /healthz from inside the
     pod with bash's /dev/tcp (the image has bash, not curl) and passes on a
     200 status line. */}}
{{- define "paymesh.appProbeCommand" -}}
- /bin/bash
- -c
- >-
  exec 3<>/dev/tcp/127.0.0.1/{{ .Values.app.port }}
  && printf 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
  && read -r -t {{ .Values.app.probes.liveness.timeoutSeconds | default 3 }} status <&3
  && [[ $status == "HTTP/1.1 200"* ]]
{{- end }}
