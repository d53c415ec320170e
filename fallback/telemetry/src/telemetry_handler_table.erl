%% @private
%% Owner of the handler registry.
%%
%% Handlers live in a named, protected ETS table (a duplicate_bag keyed on the
%% event name, tuned for concurrent reads). Readers - `telemetry:execute/3' and
%% `telemetry:list_handlers/1' - read the table directly from the calling
%% process. All writes are serialised through this gen_server, which is what
%% makes the "handler IDs are unique" check race-free.
%%
%% Besides the table, the server keeps a map from handler ID to the rows
%% stored for it, so that detaching never needs to scan the whole table.
%%
%% After persist/0 the handlers are also kept in `persistent_term' as a map
%% from event name to rows, and readers use it (no ETS lookup, no copy).
%% Later writes still go through the server, which updates the table and
%% then replaces the persistent term: a global GC pass each time, which is
%% why writes after persist are discouraged. The term is erased when the
%% server stops or starts.
-module(telemetry_handler_table).

-behaviour(gen_server).

-export([start_link/0,
         persist/0,
         insert/4,
         delete/1,
         list_for_event/1,
         list_by_prefix/1]).

-export([init/1,
         handle_call/3,
         handle_cast/2,
         handle_info/2,
         terminate/2,
         code_change/3]).

-include("telemetry.hrl").

%% Public API (called by the telemetry module)

-spec start_link() -> {ok, pid()} | ignore | {error, term()}.
start_link() ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, [], []).

-spec insert(telemetry:handler_id(), [telemetry:event_name()],
             telemetry:handler_function(), telemetry:handler_config()) ->
          ok | {error, already_exists}.
insert(HandlerId, EventNames, Function, Config) ->
    gen_server:call(?MODULE, {attach, HandlerId, EventNames, Function, Config}).

-spec delete(telemetry:handler_id()) -> ok | {error, not_found}.
delete(HandlerId) ->
    gen_server:call(?MODULE, {detach, HandlerId}).

%% Moves dispatch to persistent_term (idempotent). `ok' also when the
%% application is not running (nothing to persist).
-spec persist() -> ok.
persist() ->
    try
        gen_server:call(?MODULE, persist)
    catch
        exit:{noproc, _} -> ok
    end.

%% Hot path: one persistent_term read, then a map or ETS lookup, in the
%% caller's process.
-spec list_for_event(telemetry:event_name()) -> [#handler{}].
list_for_event(EventName) ->
    case persistent_term:get(?PERSISTED_KEY, undefined) of
        undefined ->
            try
                ets:lookup(?TELEMETRY_TABLE, EventName)
            catch
                error:badarg -> not_started()
            end;
        #{EventName := Rows} ->
            Rows;
        #{} ->
            []
    end.

-spec list_by_prefix(telemetry:event_prefix()) -> [#handler{}].
list_by_prefix(Prefix) ->
    Pattern = #handler{id = '_',
                       event_name = prefix_pattern(Prefix),
                       function = '_',
                       config = '_'},
    try
        ets:match_object(?TELEMETRY_TABLE, Pattern)
    catch
        error:badarg -> not_started()
    end.

%% gen_server callbacks

init([]) ->
    %% terminate/2 must run on shutdown to erase the persisted handlers; a
    %% term left by a server that was killed is stale: erase it here too.
    process_flag(trap_exit, true),
    _ = persistent_term:erase(?PERSISTED_KEY),
    _ = ets:new(?TELEMETRY_TABLE, [named_table,
                                   protected,
                                   duplicate_bag,
                                   {keypos, #handler.event_name},
                                   {read_concurrency, true}]),
    {ok, #{}}.

handle_call({attach, HandlerId, EventNames, Function, Config}, _From, ById) ->
    case maps:is_key(HandlerId, ById) of
        true ->
            {reply, {error, already_exists}, ById};
        false ->
            Rows = [#handler{id = HandlerId,
                             event_name = EventName,
                             function = Function,
                             config = Config} || EventName <- EventNames],
            true = ets:insert(?TELEMETRY_TABLE, Rows),
            republish(EventNames),
            {reply, ok, remember(HandlerId, Rows, ById)}
    end;
handle_call({detach, HandlerId}, _From, ById) ->
    case maps:take(HandlerId, ById) of
        {Rows, Rest} ->
            lists:foreach(fun(Row) -> ets:delete_object(?TELEMETRY_TABLE, Row) end, Rows),
            republish([Row#handler.event_name || Row <- Rows]),
            {reply, ok, Rest};
        error ->
            {reply, {error, not_found}, ById}
    end;
handle_call(persist, _From, ById) ->
    case persistent_term:get(?PERSISTED_KEY, undefined) of
        undefined ->
            Map = lists:foldl(fun(Row, Acc) ->
                                      maps:update_with(Row#handler.event_name,
                                                       fun(Rows) -> [Row | Rows] end,
                                                       [Row], Acc)
                              end, #{}, ets:tab2list(?TELEMETRY_TABLE)),
            persistent_term:put(?PERSISTED_KEY, Map);
        _ ->
            ok
    end,
    {reply, ok, ById};
handle_call(_Other, _From, ById) ->
    {reply, {error, unsupported}, ById}.

handle_cast(_Msg, ById) ->
    {noreply, ById}.

handle_info(_Msg, ById) ->
    {noreply, ById}.

terminate(_Reason, _ById) ->
    _ = persistent_term:erase(?PERSISTED_KEY),
    ok.

code_change(_OldVsn, ById, _Extra) ->
    {ok, ById}.

%% Internal

%% Once persisted, a write replaces the persistent map's entries for the
%% event names it touched (the table is the source of truth).
republish(EventNames) ->
    case persistent_term:get(?PERSISTED_KEY, undefined) of
        undefined ->
            ok;
        Map ->
            New = lists:foldl(fun(EventName, Acc) ->
                                      case ets:lookup(?TELEMETRY_TABLE, EventName) of
                                          [] -> maps:remove(EventName, Acc);
                                          Rows -> Acc#{EventName => Rows}
                                      end
                              end, Map, EventNames),
            New =:= Map orelse persistent_term:put(?PERSISTED_KEY, New),
            ok
    end.

%% An attach with no event names stores nothing, so it does not reserve the ID.
remember(_HandlerId, [], ById) -> ById;
remember(HandlerId, Rows, ById) -> ById#{HandlerId => Rows}.

%% [a, b] becomes the match pattern [a, b | '_'], i.e. "any list starting
%% with a, b"; [] becomes '_', which matches every event name.
prefix_pattern([]) -> '_';
prefix_pattern([Segment | Rest]) -> [Segment | prefix_pattern(Rest)].

not_started() ->
    ?LOG_WARNING("Failed to lookup telemetry handlers. "
                 "Ensure the telemetry application has been started.", []),
    [].
