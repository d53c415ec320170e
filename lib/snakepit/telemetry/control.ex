defmodule Snakepit.Telemetry.Control do
  @moduledoc """
  Builds the control messages Elixir sends to a worker's telemetry stream
  (the wire's `TelemetryControl` oneof): toggle, sampling, filter.

  Each builder validates its input and returns `{:ok, control}` or
  `{:error, reason}`; nothing here raises on bad input.

  Patterns are globs over Python event names with the meaning of Python's
  `fnmatch.fnmatchcase` (`"python.*"`, `"tool.execution.?top"`,
  `"python.[cg]*"`, `"python.[!cg]*"`; the table of
  `priv/catalog/value_rules.json`): 1 to `max_pattern_bytes` (128) bytes of
  letters, digits and `_ . - * ? [ ] !`, at most `max_patterns` (64) per list
  (both catalog limits). Patterns may also be written with Elixir event
  names, `snakepit.python.tool.*` beside `tool.*` (see `patterns/1`).
  """

  alias Snakepit.Telemetry.Glob

  @max_patterns Snakepit.Telemetry.Catalog.limits().max_patterns
  @max_pattern_bytes Snakepit.Telemetry.Catalog.limits().max_pattern_bytes
  @pattern ~r/\A[A-Za-z0-9_.*?!\[\]-]+\z/

  @type pattern :: String.t()
  @type t ::
          {:toggle, boolean}
          | {:sampling, float, [pattern]}
          | {:filter, [pattern], [pattern]}
  @type reason ::
          {:invalid_enabled, term}
          | {:invalid_rate, term}
          | {:invalid_pattern, term}
          | {:invalid_patterns, term}
          | {:no_matching_event, String.t()}
          | {:invalid_option, term}

  @doc """
  Turns a worker's telemetry on or off.

      iex> Snakepit.Telemetry.Control.toggle(false)
      {:ok, {:toggle, false}}
      iex> Snakepit.Telemetry.Control.toggle("yes")
      {:error, {:invalid_enabled, "yes"}}
  """
  @spec toggle(term) :: {:ok, t} | {:error, reason}
  def toggle(enabled) when is_boolean(enabled), do: {:ok, {:toggle, enabled}}
  def toggle(other), do: {:error, {:invalid_enabled, other}}

  @doc """
  Sets the sampling rate (0.0 to 1.0), for all events or only those matching
  `patterns`.

      iex> Snakepit.Telemetry.Control.sampling(0.25, ["python.call.*"])
      {:ok, {:sampling, 0.25, ["python.call.*"]}}
      iex> Snakepit.Telemetry.Control.sampling(1.5)
      {:error, {:invalid_rate, 1.5}}
  """
  @spec sampling(term, term) :: {:ok, t} | {:error, reason}
  def sampling(rate, patterns \\ [])

  def sampling(rate, patterns) when is_number(rate) and rate >= 0 and rate <= 1 do
    with {:ok, patterns} <- patterns(patterns), do: {:ok, {:sampling, rate / 1, patterns}}
  end

  def sampling(rate, _patterns), do: {:error, {:invalid_rate, rate}}

  @doc """
  Sets allow and deny globs; an event passes when it matches an allow pattern
  (or the allow list is empty) and no deny pattern. Deny wins.

  ## Options

    * `:allow` - list of globs (default `[]`: allow everything)
    * `:deny` - list of globs (default `[]`)

      iex> Snakepit.Telemetry.Control.filter(allow: ["python.*"], deny: ["python.gc.*"])
      {:ok, {:filter, ["python.*"], ["python.gc.*"]}}
  """
  @spec filter(term) :: {:ok, t} | {:error, reason}
  # length/1 in the guard also refuses an improper list.
  def filter(opts) when is_list(opts) and length(opts) <= 2 do
    with :ok <- known_options(opts),
         {:ok, allow} <- patterns(Keyword.get(opts, :allow, [])),
         {:ok, deny} <- patterns(Keyword.get(opts, :deny, [])) do
      {:ok, {:filter, allow, deny}}
    end
  end

  def filter(other), do: {:error, {:invalid_option, other}}

  defp known_options(opts) do
    case Enum.reject(opts, &match?({k, _} when k in [:allow, :deny], &1)) do
      [] -> :ok
      [bad | _] -> {:error, {:invalid_option, bad}}
    end
  end

  @doc """
  Validates a list of glob patterns. A pattern written with Elixir event
  names (starting `snakepit.`) becomes the Python names of the catalog
  events it matches, which is what a worker filters on:

      iex> Snakepit.Telemetry.Control.patterns(["snakepit.python.tool.execution.*"])
      {:ok, ["tool.execution.start", "tool.execution.stop", "tool.execution.exception"]}
      iex> Snakepit.Telemetry.Control.patterns(["snakepit.python.nothing.*"])
      {:error, {:no_matching_event, "snakepit.python.nothing.*"}}
  """
  @spec patterns(term) :: {:ok, [pattern]} | {:error, reason}
  def patterns(list) when is_list(list) and length(list) <= @max_patterns do
    # Enum.find/2 would return the bad element itself: nil looked like "none".
    case Enum.reject(list, &valid_pattern?/1) do
      [] -> expand(list)
      [bad | _] -> {:error, {:invalid_pattern, bad}}
    end
  end

  def patterns(other), do: {:error, {:invalid_patterns, other}}

  # Python name of every worker event, by its dotted Elixir name (catalog order).
  @python_names for %{python_name: py, event: event} <- Snakepit.Telemetry.Catalog.entries(),
                    py,
                    do: {Enum.map_join(event, ".", &Atom.to_string/1), py}

  defp expand(list) do
    expanded =
      Enum.reduce_while(list, [], fn
        "snakepit." <> _ = p, acc ->
          case for {elixir, py} <- @python_names, Glob.match?(p, elixir), do: py do
            [] -> {:halt, {:error, {:no_matching_event, p}}}
            names -> {:cont, Enum.reverse(names, acc)}
          end

        p, acc ->
          {:cont, [p | acc]}
      end)

    case expanded do
      {:error, _} = error -> error
      names when length(names) > @max_patterns -> {:error, {:invalid_patterns, list}}
      names -> {:ok, names |> Enum.reverse() |> Enum.uniq()}
    end
  end

  defp valid_pattern?(p) when is_binary(p) and byte_size(p) <= @max_pattern_bytes,
    do: Regex.match?(@pattern, p)

  defp valid_pattern?(_), do: false
end
