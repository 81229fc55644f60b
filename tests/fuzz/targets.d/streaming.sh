# Streaming server fuzz targets (sourced by tests/fuzz/run.sh).
_st="cri-server/streaming/server.c cri-server/streaming/spdy.c cri-server/streaming/websocket.c cri-server/streaming/remotecommand.c common/error.c common/log.c"
SRC[fuzz-spdy]="$_st"
LIBS[fuzz-spdy]="-lz -lcrypto"
SRC[fuzz-websocket]="$_st"
LIBS[fuzz-websocket]="-lz -lcrypto"
