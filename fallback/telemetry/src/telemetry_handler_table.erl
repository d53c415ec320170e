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
-module(telemetry_handler_table).

-behaviour(gen_server).

-export([start_link/0,
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

%% Hot path: a single ETS read in the caller's process.
-spec list_for_event(telemetry:event_name()) -> [#handler{}].
list_for_event(EventName) ->
    try
        ets:lookup(?TELEMETRY_TABLE, EventName)
    catch
        error:badarg -> not_started()
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
            {reply, ok, remember(HandlerId, Rows, ById)}
    end;
handle_call({detach, HandlerId}, _From, ById) ->
    case maps:take(HandlerId, ById) of
        {Rows, Rest} ->
            lists:foreach(fun(Row) -> ets:delete_object(?TELEMETRY_TABLE, Row) end, Rows),
            {reply, ok, Rest};
        error ->
            {reply, {error, not_found}, ById}
    end;
handle_call(_Other, _From, ById) ->
    {reply, {error, unsupported}, ById}.

handle_cast(_Msg, ById) ->
    {noreply, ById}.

handle_info(_Msg, ById) ->
    {noreply, ById}.

terminate(_Reason, _ById) ->
    ok.

code_change(_OldVsn, ById, _Extra) ->
    {ok, ById}.

%% Internal

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
