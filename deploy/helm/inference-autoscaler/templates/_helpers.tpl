{{/* Names, labels and the small decisions several templates share. */}}

{{- define "ia.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ia.fullname" -}}
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

{{- define "ia.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ia.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ia.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ia.labels" -}}
helm.sh/chart: {{ include "ia.chart" . }}
{{ include "ia.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: inference-autoscaler
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "ia.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ia.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ia.leaseName" -}}
{{- default (include "ia.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "ia.policiesConfigMap" -}}
{{- default (printf "%s-policies" (include "ia.fullname" .)) .Values.policies.existingConfigMap }}
{{- end }}

{{- define "ia.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The serving-certificate Secret of the metrics API, or "" for a self-signed pair made at start. */}}
{{- define "ia.tlsSecret" -}}
{{- if .Values.metricsApi.tls.certManager.enabled }}
{{- printf "%s-serving-cert" (include "ia.fullname" .) }}
{{- else }}
{{- .Values.metricsApi.tls.existingSecret }}
{{- end }}
{{- end }}

{{/* Fail early on a metrics API the aggregator could not trust. */}}
{{- define "ia.validate" -}}
{{- $m := .Values.metricsApi }}
{{- if and $m.enabled $m.apiService.create }}
{{- $trusted := or $m.tls.certManager.enabled (and $m.tls.existingSecret $m.apiService.caBundle) $m.apiService.insecureSkipTLSVerify }}
{{- if not $trusted }}
{{- fail "metricsApi.apiService needs a way to trust the serving certificate: metricsApi.tls.certManager.enabled, or metricsApi.tls.existingSecret with metricsApi.apiService.caBundle, or (development only) metricsApi.apiService.insecureSkipTLSVerify" }}
{{- end }}
{{- if and $m.apiService.insecureSkipTLSVerify $m.apiService.caBundle }}
{{- fail "metricsApi.apiService: caBundle and insecureSkipTLSVerify are exclusive" }}
{{- end }}
{{- end }}
{{- if and $m.tls.certManager.enabled $m.tls.existingSecret }}
{{- fail "metricsApi.tls: certManager.enabled and existingSecret are exclusive" }}
{{- end }}
{{- if and (not .Values.leaderElection.enabled) (gt (int .Values.replicaCount) 1) }}
{{- fail "leaderElection.enabled=false runs every replica as leader: set replicaCount to 1" }}
{{- end }}
{{- end }}

{{- /* What the controller does in the namespaces of its policies: read its ScalingPolicy and
PolicyDefaults objects and write the policies' status, read and write the targets' scale subresource
(and the warm-pool placeholder Deployment's), count their ready pods, refuse to fight an HPA, and
record Events on the targets. The targets themselves are listed and watched for the watched caches,
and read by name without one (their own pause annotations). */}}
{{- define "ia.targetRules" -}}
- apiGroups: [inference-autoscaler.io]
  resources: [scalingpolicies, policydefaults]
  verbs: [get, list, watch]
- apiGroups: [inference-autoscaler.io]
  resources: [scalingpolicies/status]
  verbs: [patch, update]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- range .Values.targets }}
- apiGroups: [{{ .apiGroup | quote }}]
  resources:
    {{- range .resources }}
    - {{ . }}/scale
    {{- end }}
  verbs: [get, update, patch]
- apiGroups: [{{ .apiGroup | quote }}]
  resources:
    {{- range .resources }}
    - {{ . }}
    {{- end }}
  {{- /* apps kinds are read from a watched cache; other kinds' replica paths are their CRD's, so only
  their own object is read (its pause annotations) and their scale through the subresource */}}
  verbs: {{ if eq .apiGroup "apps" }}[get, list, watch]{{ else }}[get]{{ end }}
{{- end }}
{{- with .Values.rbac.extraRules }}
{{ toYaml . }}
{{- end }}
{{- end }}
