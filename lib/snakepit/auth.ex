defmodule Snakepit.Auth do
  @moduledoc """
  The per-worker token: only the BEAM that started a Python worker may talk
  to it.

  `Snakepit.GRPCWorker` makes a fresh token for each worker process
  (`new_token/0`: 256 random bits from `:crypto`) and writes it as the first
  line of the worker's stdin (`grpc_server.py --auth-token-stdin`), so it
  appears on no command line and in no environment. The NIF sends it as
  `authorization: Bearer <token>` on every RPC (tool calls, `Ping`, both
  telemetry RPCs); the worker refuses any call without it with
  `UNAUTHENTICATED` and counts it (`GrpcStream.stats/1`,
  `:python_auth_rejected`).

  A token is 22 to 512 visible ASCII characters (at least 128 bits in
  base64). It is held as a `Snakepit.Auth.Token`, which inspects as
  `#Snakepit.Auth.Token<redacted>`, so no crash report or log prints it.
  """

  defmodule Token do
    @moduledoc "A worker token; `inspect/1` never shows its value."
    @enforce_keys [:value]
    defstruct [:value]
    @type t :: %__MODULE__{value: String.t()}

    defimpl Inspect do
      def inspect(_token, _opts), do: "#Snakepit.Auth.Token<redacted>"
    end
  end

  @min_chars 22
  @max_chars 512

  @doc "A new random token (32 bytes from `:crypto.strong_rand_bytes/1`, base64url)."
  @spec new_token() :: Token.t()
  def new_token,
    do: %Token{value: Base.url_encode64(:crypto.strong_rand_bytes(32), padding: false)}

  @doc """
  `{:ok, token}` for a `Token` or a string of #{@min_chars}..#{@max_chars} visible
  ASCII characters, `{:ok, nil}` for `nil` (no token: a worker started with
  `--no-auth`); `{:error, {:invalid_option, {:token, :redacted}}}` otherwise
  (the error never echoes the value).
  """
  @spec token(term) :: {:ok, Token.t() | nil} | {:error, term}
  def token(nil), do: {:ok, nil}
  def token(%Token{value: value}), do: token(value)

  def token(value)
      when is_binary(value) and byte_size(value) >= @min_chars and byte_size(value) <= @max_chars do
    if visible_ascii?(value), do: {:ok, %Token{value: value}}, else: invalid()
  end

  def token(_other), do: invalid()

  @doc "The string a `Token` holds (`\"\"` for `nil`), for the NIF."
  @spec reveal(Token.t() | nil) :: String.t()
  def reveal(nil), do: ""
  def reveal(%Token{value: value}), do: value

  defp visible_ascii?(<<c, rest::binary>>) when c in ?!..?~, do: visible_ascii?(rest)
  defp visible_ascii?(<<>>), do: true
  defp visible_ascii?(_), do: false

  defp invalid, do: {:error, {:invalid_option, {:token, :redacted}}}
end
