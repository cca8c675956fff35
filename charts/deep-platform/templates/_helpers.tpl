{{/* Names, labels and the shared pieces of every pod. */}}

{{- define "deep-platform.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "deep-platform.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A component's object name: "<fullname>-<component>" (call with (list $ "operator")). */}}
{{- define "deep-platform.component" -}}
{{- $ := index . 0 -}}
{{- printf "%s-%s" (include "deep-platform.fullname" $) (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "deep-platform.labels" -}}
{{- $ := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $.Chart.Name $.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ $.Release.Service }}
app.kubernetes.io/part-of: deep-platform
app.kubernetes.io/version: {{ $.Chart.AppVersion | quote }}
{{ include "deep-platform.selectorLabels" . }}
{{- with $.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels never change after install (Deployments' selectors are immutable). */}}
{{- define "deep-platform.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "deep-platform.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "deep-platform.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Pod Security "restricted": the pod level. */}}
{{- define "deep-platform.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Pod Security "restricted": every container. */}}
{{- define "deep-platform.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- define "deep-platform.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ if kindIs "string" . }}{{ . }}{{ else }}{{ .name }}{{ end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Base URL of the activator as users reach it; InferenceService status.url is built on it. */}}
{{- define "deep-platform.activatorURL" -}}
{{- if .Values.activator.url -}}
{{- .Values.activator.url -}}
{{- else if and .Values.activator.ingress.enabled .Values.activator.ingress.host -}}
{{- printf "%s://%s" (ternary "https" "http" (not (empty .Values.activator.ingress.tlsSecretName))) .Values.activator.ingress.host -}}
{{- else -}}
{{- printf "http://%s.%s.svc" (include "deep-platform.component" (list . "activator")) .Release.Namespace -}}
{{- if ne (int .Values.activator.service.port) 80 -}}:{{ .Values.activator.service.port }}{{- end -}}
{{- end -}}
{{- end -}}

{{/* Argo CD sync wave (an annotation line), for objects whose order matters. */}}
{{- define "deep-platform.syncWave" -}}
argocd.argoproj.io/sync-wave: {{ . | quote }}
{{- end -}}

{{/* The URL people reach the web app at (the OIDC redirect URI is this plus /callback); empty:
the app takes it from each request. */}}
{{- define "deep-platform.webURL" -}}
{{- if .Values.web.auth.publicUrl -}}
{{- .Values.web.auth.publicUrl -}}
{{- else if and .Values.web.ingress.enabled .Values.web.ingress.host -}}
{{- printf "%s://%s" (ternary "https" "http" (not (empty .Values.web.ingress.tlsSecretName))) .Values.web.ingress.host -}}
{{- end -}}
{{- end -}}
