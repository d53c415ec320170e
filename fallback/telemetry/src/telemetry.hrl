%% Shared definitions for the local telemetry implementation.
%%
%% One #handler{} row is stored per (handler, event name) pair. The ETS table
%% uses the event name as its key, so dispatching an event is a single
%% ets:lookup/2 on that key.

-include_lib("kernel/include/logger.hrl").

-define(TELEMETRY_TABLE, telemetry_handler_table).

%% After telemetry:persist/0: #{EventName => [#handler{}]} in persistent_term.
-define(PERSISTED_KEY, {telemetry, persisted_handlers}).

-record(handler, {id :: telemetry:handler_id(),
                  event_name :: telemetry:event_name(),
                  function :: telemetry:handler_function(),
                  config :: telemetry:handler_config()}).
