{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "recsys-serving.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "recsys-serving.fullname" -}}
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

{{- define "recsys-serving.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "recsys-serving.selectorLabels" -}}
app.kubernetes.io/name: {{ include "recsys-serving.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "recsys-serving.labels" -}}
helm.sh/chart: {{ include "recsys-serving.chart" . }}
{{ include "recsys-serving.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: inference
app.kubernetes.io/part-of: recsys
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "recsys-serving.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "recsys-serving.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "recsys-serving.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "recsys-serving.apiKeySecretName" -}}
{{- default (printf "%s-api-key" (include "recsys-serving.fullname" .)) .Values.apiKey.existingSecret }}
{{- end }}

{{- define "recsys-serving.apiKeySecretKey" -}}
{{- if .Values.apiKey.existingSecret }}{{ .Values.apiKey.existingSecretKey }}{{ else }}api-key{{ end }}
{{- end }}

{{/* What the pods serve; the checksum annotation is derived from it. */}}
{{- define "recsys-serving.modelSource" -}}
{{- if .Values.model.bundleUri }}bundle={{ .Values.model.bundleUri }}{{ else }}registry={{ .Values.model.registryUri }}{{ end }}
{{- end }}

{{/* The live store URL the pods share (RECSYS_LIVE_STORE); "memory" for a lone pod. */}}
{{- define "recsys-serving.liveStoreUrl" -}}
{{- if eq .Values.liveStore.backend "memory" }}memory
{{- else }}{{ if .Values.liveStore.tls }}rediss{{ else }}redis{{ end }}://{{ .Values.liveStore.host }}:{{ .Values.liveStore.port }}/{{ .Values.liveStore.db }}
{{- end }}
{{- end }}

{{/* Refuse live-store settings that would break real time across replicas. */}}
{{- define "recsys-serving.checkLiveStore" -}}
{{- $ls := .Values.liveStore }}
{{- if eq $ls.backend "redis" }}
{{- if not $ls.host }}
{{- fail "set liveStore.host (Azure Managed Redis: <name>.<region>.redis.azure.net): every replica reads every user's live events from that shared store (liveStore.backend=memory is for a single replica only)" }}
{{- end }}
{{- if and (eq $ls.auth "key") (not $ls.existingSecret) }}
{{- fail "set liveStore.existingSecret (the Secret holding the Redis access key) or liveStore.auth=entra" }}
{{- end }}
{{- if and (eq $ls.auth "entra") (not .Values.serviceAccount.workloadIdentity.enabled) }}
{{- fail "liveStore.auth=entra needs serviceAccount.workloadIdentity.enabled: the pods authenticate to Redis as that identity" }}
{{- end }}
{{- else if or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) }}
{{- fail "liveStore.backend=memory keeps each pod's live events to itself: use it with replicaCount 1 and autoscaling.enabled=false, or set liveStore.backend=redis" }}
{{- end }}
{{- end }}
