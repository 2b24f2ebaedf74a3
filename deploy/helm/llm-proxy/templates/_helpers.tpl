{{- define "llm-proxy.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "llm-proxy.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "llm-proxy.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: proxy
{{- end -}}

{{- define "llm-proxy.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}

{{/* Settings checked once, before anything renders. */}}
{{- define "llm-proxy.validate" -}}
{{- $v := .Values -}}
{{- if $v.embedded.enabled -}}
  {{- if or (gt (int $v.replicaCount) 1) $v.autoscaling.enabled -}}
    {{- fail "embedded.enabled keeps SQLite in the pod: replicaCount must be 1 and autoscaling off" -}}
  {{- end -}}
  {{- if or (eq $v.cache "redis") (contains "redis" $v.events.sinks) $v.dispatcher.enabled -}}
    {{- fail "embedded.enabled has no Redis: set cache=memory, events.sinks without redis, dispatcher.enabled=false" -}}
  {{- end -}}
{{- else -}}
  {{- if not $v.secrets.existingSecret -}}
    {{- fail "secrets.existingSecret is required (management token, encryption key, token hash key: the same for every replica, never generated per pod)" -}}
  {{- end -}}
  {{- if not $v.postgres.existingSecret.name -}}
    {{- fail "postgres.existingSecret.name is required unless embedded.enabled" -}}
  {{- end -}}
  {{- if and (or (gt (int $v.replicaCount) 1) $v.autoscaling.enabled) (not $v.redis.existingSecret.name) -}}
    {{- fail "redis.existingSecret.name is required with more than one replica: without Redis each replica counts limits on its own" -}}
  {{- end -}}
{{- end -}}
{{- if and (not $v.embedded.enabled) (or (eq $v.cache "redis") (contains "redis" $v.events.sinks)) (not $v.redis.existingSecret.name) -}}
  {{- fail "cache=redis and a redis event sink need redis.existingSecret.name" -}}
{{- end -}}
{{- if and $v.dispatcher.enabled (not (contains "redis" $v.events.sinks)) -}}
  {{- fail "dispatcher.enabled reads the Redis event stream: events.sinks must include redis" -}}
{{- end -}}
{{- if or (contains "{" $v.redis.prefix) (contains "}" $v.redis.prefix) -}}
  {{- fail "redis.prefix must not contain { or }" -}}
{{- end -}}
{{- end -}}

{{/* The variables naming secrets held in Secrets, for both commands. */}}
{{- define "llm-proxy.secretEnv" -}}
{{- if not .Values.embedded.enabled }}
- name: LLM_PROXY_DATABASE_URL
  valueFrom:
    secretKeyRef: { name: {{ .Values.postgres.existingSecret.name | quote }}, key: {{ .Values.postgres.existingSecret.key | quote }} }
{{- end }}
{{- if and .Values.redis.existingSecret.name (not .Values.embedded.enabled) }}
- name: LLM_PROXY_REDIS_URL
  valueFrom:
    secretKeyRef: { name: {{ .Values.redis.existingSecret.name | quote }}, key: {{ .Values.redis.existingSecret.key | quote }} }
{{- end }}
{{- end -}}

{{- define "llm-proxy.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities: { drop: [ALL] }
{{- end -}}
