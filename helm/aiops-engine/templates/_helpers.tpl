{{- define "aiops-engine.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "aiops-engine.serviceAccountName" -}}
{{- default (include "aiops-engine.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "aiops-engine.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- /* Labels that select one component's pods; the rest of the labels may change between releases. */ -}}
{{- define "aiops-engine.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "aiops-engine.componentLabels" -}}
{{ include "aiops-engine.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "aiops-engine.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "aiops-engine.modelServerImage" -}}
{{- $image := .Values.modelServer.image -}}
{{- printf "%s:%s" (default .Values.image.repository $image.repository) (default (default .Chart.AppVersion .Values.image.tag) $image.tag) -}}
{{- end -}}

{{- /* The registry both the model server and the engine's alias rollbacks use: the one named in values, else the
chart's own MLflow server. */ -}}
{{- define "aiops-engine.trackingUri" -}}
{{- if .Values.mlflow.trackingUri -}}
{{- .Values.mlflow.trackingUri -}}
{{- else if .Values.mlflow.deploy -}}
{{- printf "http://%s-mlflow.%s.svc:%v" (include "aiops-engine.fullname" .) .Release.Namespace .Values.mlflow.port -}}
{{- else -}}
{{- fail "mlflow.trackingUri is empty and mlflow.deploy is false: name the MLflow server the model server loads from, or set mlflow.deploy=true" -}}
{{- end -}}
{{- end -}}

{{- /* Scheduling and security shared by every pod of the chart. */ -}}
{{- define "aiops-engine.podPlacement" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{- define "aiops-engine.monitoring" -}}
{{- $mode := .Values.monitoring.create -}}
{{- if or (eq $mode "always") (and (eq $mode "auto") (or (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor") (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1"))) -}}
true
{{- end -}}
{{- end -}}
