%% @doc Dynamic dispatching of events to attached handler functions.
%%
%% This is a local, independently written implementation of the public API of
%% the `telemetry' 1.x library (version 1.4.1), used where Hex is not
%% available. Code written against `telemetry' works unchanged with it:
%%
%% <ul>
%%   <li>{@link attach/4} and {@link attach_many/4} register a handler function
%%       under a unique ID for one or more event names;</li>
%%   <li>{@link execute/3} emits an event: every handler attached to exactly
%%       that event name is called, in the emitting process;</li>
%%   <li>{@link span/3} wraps a function in `start' and `stop'/`exception'
%%       events;</li>
%%   <li>{@link detach/1} and {@link list_handlers/1} manage the registry;</li>
%%   <li>{@link persist/0} makes dispatch faster once handlers are attached.</li>
%% </ul>
%%
%% A handler that raises, throws or exits is detached, a
%% `[telemetry, handler, failure]' event is emitted, and an error is logged.
%% @end
-module(telemetry).

-export([attach/4,
         attach_many/4,
         detach/1,
         persist/0,
         list_handlers/1,
         execute/2,
         execute/3,
         span/3]).

%% Used by logger to format the "local function" report.
-export([report_cb/1]).

-include("telemetry.hrl").

-type handler_id() :: term().
-type event_name() :: [atom(), ...].
-type event_measurements() :: map().
-type event_metadata() :: map().
-type event_value() :: number().
-type event_prefix() :: [atom()].
-type handler_config() :: term().
-type handler_function() :: fun((event_name(), event_measurements(),
                                 event_metadata(), handler_config()) -> any()).
-type span_result() :: term().
-type span_function() :: fun(() -> {span_result(), event_metadata()}
                                 | {span_result(), event_measurements(), event_metadata()}).
-type handler() :: #{id := handler_id(),
                     event_name := event_name(),
                     function := handler_function(),
                     config := handler_config()}.

-export_type([handler_id/0,
              event_name/0,
              event_measurements/0,
              event_metadata/0,
              event_value/0,
              event_prefix/0,
              handler_config/0,
              handler_function/0,
              handler/0,
              span_result/0,
              span_function/0]).

-define(FAILURE_EVENT, [telemetry, handler, failure]).
-define(SPAN_CTX_KEY, telemetry_span_context).

%%--------------------------------------------------------------------
%% Registry
%%--------------------------------------------------------------------

%% @doc Attaches `Function' to the event `EventName' under `HandlerId'.
%%
%% Returns `{error, already_exists}' when a handler with the same ID is
%% already attached. Same as `attach_many(HandlerId, [EventName], Function, Config)'.
%%
%% The function is called with the event name, the measurements, the
%% metadata and `Config', in the process that emits the event. Prefer
%% external captures (`fun mod:handle/4', `&Mod.handle/4') over anonymous
%% functions or local captures; attaching the latter logs an `info' report.
%% Do not rely on the order in which handlers are invoked.
-spec attach(HandlerId, EventName, Function, Config) -> ok | {error, already_exists} when
      HandlerId :: handler_id(),
      EventName :: event_name(),
      Function :: handler_function(),
      Config :: handler_config().
attach(HandlerId, EventName, Function, Config) ->
    attach_many(HandlerId, [EventName], Function, Config).

%% @doc Attaches `Function' to every event in `EventNames' under one ID.
%%
%% If the handler fails while handling any of these events it is detached
%% from all of them, exactly as {@link detach/1} would do. Event names must
%% be non-empty lists of atoms (otherwise `badarg' is raised) and `Function'
%% must be a fun of arity 4.
-spec attach_many(HandlerId, [EventName], Function, Config) -> ok | {error, already_exists} when
      HandlerId :: handler_id(),
      EventName :: event_name(),
      Function :: handler_function(),
      Config :: handler_config().
attach_many(HandlerId, EventNames, Function, Config) when is_function(Function, 4) ->
    ok = check_event_names(EventNames),
    maybe_report_local_function(HandlerId, EventNames, Function, Config),
    telemetry_handler_table:insert(HandlerId, EventNames, Function, Config).

%% @doc Detaches the handler registered under `HandlerId' from all its events.
%%
%% Returns `{error, not_found}' when there is no such handler.
-spec detach(handler_id()) -> ok | {error, not_found}.
detach(HandlerId) ->
    telemetry_handler_table:delete(HandlerId).

%% @doc Moves the handlers into `persistent_term' for faster dispatch.
%%
%% From then on {@link execute/3} reads the handlers without an ETS lookup
%% and without copying them. Attaching and detaching still work afterwards,
%% but each such write replaces the persistent term, which makes every
%% process that read the old one copy it (a global garbage collection pass):
%% call it once, after the handlers of the application are attached at
%% start-up, and avoid attaching or detaching often after that. Calling it
%% again does nothing. Always returns `ok'.
-spec persist() -> ok.
persist() ->
    telemetry_handler_table:persist().

%% @doc Lists the handlers attached to event names starting with `EventPrefix'.
%%
%% `[]' lists every handler. A handler attached to several events is listed
%% once per event.
-spec list_handlers(event_prefix()) -> [handler()].
list_handlers(EventPrefix) ->
    ok = check_prefix(EventPrefix),
    [#{id => Row#handler.id,
       event_name => Row#handler.event_name,
       function => Row#handler.function,
       config => Row#handler.config}
     || Row <- telemetry_handler_table:list_by_prefix(EventPrefix)].

%%--------------------------------------------------------------------
%% Emitting
%%--------------------------------------------------------------------

%% @equiv execute(EventName, Measurements, #{})
-spec execute(EventName, Measurements) -> ok when
      EventName :: event_name(),
      Measurements :: event_measurements() | event_value().
execute(EventName, Measurements) ->
    execute(EventName, Measurements, #{}).

%% @doc Emits `EventName', calling every handler attached to exactly that name.
%%
%% Each handler is called as `Function(EventName, Measurements, Metadata, Config)'
%% in the calling process. A handler that fails is detached, the event
%% `[telemetry, handler, failure]' is emitted with the measurements
%% `#{monotonic_time, system_time}' and the metadata
%% `#{event_name, handler_id, handler_config, kind, reason, stacktrace}',
%% and the failure is logged at `error' level.
%%
%% Passing a number instead of a measurements map is deprecated: it logs a
%% warning and the value is delivered as `#{value => Value}'.
-spec execute(EventName, Measurements, Metadata) -> ok when
      EventName :: event_name(),
      Measurements :: event_measurements() | event_value(),
      Metadata :: event_metadata().
execute([_ | _] = EventName, Measurements, Metadata)
  when is_map(Measurements), is_map(Metadata) ->
    dispatch(telemetry_handler_table:list_for_event(EventName),
             EventName, Measurements, Metadata);
execute(EventName, Value, Metadata) when is_number(Value) ->
    ?LOG_WARNING("Using execute/3 with a single event value is deprecated. "
                 "Use a measurement map instead.", []),
    execute(EventName, #{value => Value}, Metadata).

%% @doc Runs `SpanFunction' between a `start' and a `stop' (or `exception') event.
%%
%% <ul>
%% <li>`EventPrefix ++ [start]' is emitted first, with the measurements
%%     `#{monotonic_time, system_time}' and `StartMetadata'.</li>
%% <li>`SpanFunction' must return `{Result, StopMetadata}' or
%%     `{Result, ExtraMeasurements, StopMetadata}'. `EventPrefix ++ [stop]'
%%     is then emitted with `#{duration, monotonic_time}' (merged over
%%     `ExtraMeasurements'; the two standard keys always win) and
%%     `StopMetadata', and `Result' is returned.</li>
%% <li>If `SpanFunction' raises, throws or exits, `EventPrefix ++ [exception]'
%%     is emitted with `#{duration, monotonic_time}' and `StartMetadata'
%%     extended with `kind', `reason' and `stacktrace', and the exception is
%%     re-raised with its original class, reason and stacktrace.</li>
%% </ul>
%%
%% Times are in `native' units; `duration' is the monotonic time at the end
%% minus the monotonic time at the start. Unless the metadata already has a
%% `telemetry_span_context' key, one is added whose value is a new reference
%% shared by the events of this span.
-spec span(event_prefix(), event_metadata(), span_function()) -> span_result().
span(EventPrefix, StartMetadata, SpanFunction) ->
    SpanCtx = make_ref(),
    StartTime = erlang:monotonic_time(),
    execute(EventPrefix ++ [start],
            #{monotonic_time => StartTime, system_time => erlang:system_time()},
            with_span_ctx(StartMetadata, SpanCtx)),
    try SpanFunction() of
        {Result, StopMetadata} ->
            span_stop(EventPrefix, StartTime, #{}, StopMetadata, SpanCtx),
            Result;
        {Result, ExtraMeasurements, StopMetadata} ->
            span_stop(EventPrefix, StartTime, ExtraMeasurements, StopMetadata, SpanCtx),
            Result
    catch
        Kind:Reason:Stacktrace ->
            EndTime = erlang:monotonic_time(),
            ExceptionMetadata = StartMetadata#{kind => Kind,
                                               reason => Reason,
                                               stacktrace => Stacktrace},
            execute(EventPrefix ++ [exception],
                    #{duration => EndTime - StartTime, monotonic_time => EndTime},
                    with_span_ctx(ExceptionMetadata, SpanCtx)),
            erlang:raise(Kind, Reason, Stacktrace)
    end.

%%--------------------------------------------------------------------
%% Internal
%%--------------------------------------------------------------------

dispatch([], _EventName, _Measurements, _Metadata) ->
    ok;
dispatch([#handler{function = Function, config = Config} = Handler | Rest],
         EventName, Measurements, Metadata) ->
    try
        Function(EventName, Measurements, Metadata, Config)
    catch
        Kind:Reason:Stacktrace ->
            handler_failed(Handler, EventName, Kind, Reason, Stacktrace)
    end,
    dispatch(Rest, EventName, Measurements, Metadata).

handler_failed(#handler{id = HandlerId, config = Config}, EventName, Kind, Reason, Stacktrace) ->
    _ = detach(HandlerId),
    execute(?FAILURE_EVENT,
            #{monotonic_time => erlang:monotonic_time(),
              system_time => erlang:system_time()},
            #{event_name => EventName,
              handler_id => HandlerId,
              handler_config => Config,
              kind => Kind,
              reason => Reason,
              stacktrace => Stacktrace}),
    ?LOG_ERROR("Handler ~p has failed and has been detached. "
               "Class=~p~nReason=~p~nStacktrace=~p~n",
               [HandlerId, Kind, Reason, Stacktrace]).

span_stop(EventPrefix, StartTime, ExtraMeasurements, StopMetadata, SpanCtx) ->
    EndTime = erlang:monotonic_time(),
    Measurements = maps:merge(ExtraMeasurements,
                              #{duration => EndTime - StartTime,
                                monotonic_time => EndTime}),
    execute(EventPrefix ++ [stop], Measurements, with_span_ctx(StopMetadata, SpanCtx)).

with_span_ctx(#{?SPAN_CTX_KEY := _} = Metadata, _SpanCtx) ->
    Metadata;
with_span_ctx(Metadata, SpanCtx) ->
    Metadata#{?SPAN_CTX_KEY => SpanCtx}.

%% Event names: a list of non-empty lists of atoms.
check_event_names(EventNames) when is_list(EventNames) ->
    lists:foreach(fun check_event_name/1, EventNames);
check_event_names(_) ->
    erlang:error(badarg).

check_event_name([_ | _] = EventName) ->
    check_prefix(EventName);
check_event_name(_) ->
    erlang:error(badarg).

%% Prefixes: a (possibly empty) list of atoms.
check_prefix(Prefix) when is_list(Prefix) ->
    case lists:all(fun erlang:is_atom/1, Prefix) of
        true -> ok;
        false -> erlang:error(badarg)
    end;
check_prefix(_) ->
    erlang:error(badarg).

%% Anonymous funs and local captures are slower to call than external
%% captures (`fun M:F/A'); tell the user once, when attaching.
maybe_report_local_function(HandlerId, EventNames, Function, Config) ->
    case erlang:fun_info(Function, type) of
        {type, external} ->
            ok;
        {type, local} ->
            ?LOG_INFO(#{handler_id => HandlerId,
                        event_names => EventNames,
                        function => Function,
                        config => Config,
                        type => local},
                      #{report_cb => fun ?MODULE:report_cb/1})
    end.

%% @private
report_cb(#{handler_id := HandlerId}) ->
    {"The function passed as a handler with ID ~w is a local function "
     "(an anonymous function, or a capture without a module).~n"
     "Calling it costs more than calling an external capture such as "
     "fun mod:handle_event/4 (Erlang) or &Mod.handle_event/4 (Elixir); "
     "see the note in the telemetry:attach/4 documentation.",
     [HandlerId]}.
