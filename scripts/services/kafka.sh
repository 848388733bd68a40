#!/usr/bin/env bash
# A private single-node Apache Kafka broker (KRaft) for development and tests:
#   scripts/services/kafka.sh fetch|start|stop|bootstrap
# The jars come from Maven Central into the git-ignored .kafka/libs (fetched once, then reused); the broker listens on
# 127.0.0.1:${AIOPS_KAFKA_PORT:-59192} with its controller on ${AIOPS_KAFKA_CONTROLLER_PORT:-59193}, keeping its
# configuration, logs and data in ${AIOPS_KAFKA_RUN_DIR:-.kafka/run}: other values run a second, independent broker.
# A start formats a fresh data directory unless AIOPS_KAFKA_KEEP_DATA=1 (a restart that keeps topics and offsets).
set -euo pipefail
cd "$(dirname "$0")/../.."
KAFKA_VERSION=${AIOPS_KAFKA_VERSION:-4.1.0}
LOG4J_VERSION=2.25.1
PORT=${AIOPS_KAFKA_PORT:-59192}
CTRL_PORT=${AIOPS_KAFKA_CONTROLLER_PORT:-59193}
HOME_DIR=$PWD/.kafka
LIBS=$HOME_DIR/libs
RUN=${AIOPS_KAFKA_RUN_DIR:-$HOME_DIR/run}
KEEP_DATA=${AIOPS_KAFKA_KEEP_DATA:-0}
PIDFILE=$RUN/broker.pid

fetch() {
  if [ -f "$LIBS/.complete-$KAFKA_VERSION" ]; then return 0; fi
  local t0; t0=$(date +%s)
  mkdir -p "$HOME_DIR"
  rm -rf "$LIBS"
  # A throw-away POM whose only job is to list the broker and its logging binding (Kafka's POM brings none).
  cat > "$HOME_DIR/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.aiops</groupId><artifactId>kafka-runtime</artifactId><version>1</version><packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
POM
  mvn -q -B -f "$HOME_DIR/pom.xml" org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DoutputDirectory="$LIBS" -DincludeScope=runtime
  touch "$LIBS/.complete-$KAFKA_VERSION"
  echo "kafka: fetched $KAFKA_VERSION jars in $(( $(date +%s) - t0 )) s"
}

write_config() {
  mkdir -p "$RUN"
  cat > "$RUN/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CTRL_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CTRL_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$RUN/data
num.partitions=4
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.flush.interval.messages=9223372036854775807
PROPS
  cat > "$RUN/log4j2.properties" <<LOG
status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = $RUN/server.log
appender.file.append = false
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka.server.KafkaRaftServer
logger.kafka.level = INFO
LOG
}

java_run() {
  java -cp "$LIBS/*" -Xms256m -Xmx512m -Dlog4j2.configurationFile="$RUN/log4j2.properties" "$@"
}

running() {
  [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

answering() {
  # The port opens before the broker has caught up with its controller; the log says when it is ready.
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && grep -q "Kafka Server started" "$RUN/server.log" 2>/dev/null
}

# A random cluster id as Kafka writes them (22 URL-safe base64 characters). Like Kafka's own generator it never
# starts with "-", which the format command's argument parser would take for an option.
new_cluster_id() {
  python3 -c 'import base64,uuid
while True:
    cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()[:22]
    if not cid.startswith("-"):
        print(cid)
        break'
}

start() {
  fetch
  if running && answering; then return 0; fi
  local t0; t0=$(date +%s)
  write_config
  # A fresh log directory each start: tests create their own topics and must not see a previous run's data.
  if [ "$KEEP_DATA" != 1 ]; then rm -rf "$RUN/data"; fi
  # The readiness check reads this log: a previous run's must not answer for this one.
  rm -f "$RUN/server.log"
  # Formatted once per data directory: a kept one already has its cluster id, which a new format would contradict.
  if [ ! -f "$RUN/data/meta.properties" ]; then
    java_run kafka.tools.StorageTool format --cluster-id="$(new_cluster_id)" \
      -c "$RUN/server.properties" --ignore-formatted >/dev/null
  fi
  nohup java -cp "$LIBS/*" -Xms256m -Xmx512m -Dlog4j2.configurationFile="$RUN/log4j2.properties" \
    kafka.Kafka "$RUN/server.properties" >"$RUN/stdout.log" 2>&1 &
  echo $! > "$PIDFILE"
  for _ in $(seq 1 120); do
    if ! running; then
      echo "kafka: broker exited; the last lines of $RUN/stdout.log and $RUN/server.log:" >&2
      tail -n 20 "$RUN/stdout.log" "$RUN/server.log" >&2 2>/dev/null || true
      exit 1
    fi
    if answering; then echo "kafka: broker on 127.0.0.1:$PORT ready in $(( $(date +%s) - t0 )) s"; return 0; fi
    sleep 0.5
  done
  echo "kafka: broker did not answer within 60 s" >&2
  stop
  exit 1
}

stop() {
  running || { rm -f "$PIDFILE"; return 0; }
  local pid; pid=$(cat "$PIDFILE")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  bootstrap) echo "127.0.0.1:$PORT" ;;
  *) echo "usage: $0 fetch|start|stop|bootstrap" >&2; exit 2 ;;
esac
