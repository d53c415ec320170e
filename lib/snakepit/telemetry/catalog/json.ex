defmodule Snakepit.Telemetry.Catalog.JSON do
  @moduledoc false
  # A small, strict JSON decoder (RFC 8259) used at compile time to read the
  # catalog file: Elixir 1.14 / OTP 25 ship no JSON module and Hex (Jason) is
  # not reachable where this project builds. Objects decode to maps with
  # string keys. Not used on any runtime path: workers' JSON is parsed in Rust.

  @spec decode(binary) :: {:ok, term} | {:error, String.t()}
  def decode(text) when is_binary(text) do
    {value, rest} = value(skip_ws(text))

    case skip_ws(rest) do
      "" ->
        {:ok, value}

      other ->
        {:error, "unexpected trailing data: " <> binary_part(other, 0, min(20, byte_size(other)))}
    end
  catch
    {:json_error, message} -> {:error, message}
  end

  @spec decode!(binary) :: term
  def decode!(text) do
    case decode(text) do
      {:ok, value} -> value
      {:error, message} -> raise ArgumentError, "invalid JSON: " <> message
    end
  end

  defp value("{" <> rest), do: object(skip_ws(rest), %{})
  defp value("[" <> rest), do: array(skip_ws(rest), [])
  defp value("\"" <> rest), do: string(rest, [])
  defp value("true" <> rest), do: {true, rest}
  defp value("false" <> rest), do: {false, rest}
  defp value("null" <> rest), do: {nil, rest}
  defp value(<<c, _::binary>> = text) when c in ?0..?9 or c == ?-, do: number(text)
  defp value(_), do: fail("unexpected input")

  defp object("}" <> rest, acc), do: {acc, rest}

  defp object("\"" <> rest, acc) do
    {key, rest} = string(rest, [])
    rest = expect(skip_ws(rest), ":")
    {val, rest} = value(skip_ws(rest))
    acc = Map.put(acc, key, val)

    case skip_ws(rest) do
      "," <> rest -> object_next(skip_ws(rest), acc)
      "}" <> rest -> {acc, rest}
      _ -> fail("expected , or } in object")
    end
  end

  defp object(_, _), do: fail("expected a string key in object")

  defp object_next("\"" <> _ = text, acc), do: object(text, acc)
  defp object_next(_, _), do: fail("expected a string key after , in object")

  defp array("]" <> rest, acc), do: {Enum.reverse(acc), rest}

  defp array(text, acc) do
    {val, rest} = value(text)

    case skip_ws(rest) do
      "," <> rest -> array_next(skip_ws(rest), [val | acc])
      "]" <> rest -> {Enum.reverse([val | acc]), rest}
      _ -> fail("expected , or ] in array")
    end
  end

  defp array_next("]" <> _, _), do: fail("trailing comma in array")
  defp array_next(text, acc), do: array(text, acc)

  defp string("\"" <> rest, acc), do: {IO.iodata_to_binary(Enum.reverse(acc)), rest}
  defp string("\\" <> <<c, rest::binary>>, acc) when c in ~c(" \\ /), do: string(rest, [c | acc])
  defp string("\\b" <> rest, acc), do: string(rest, [?\b | acc])
  defp string("\\f" <> rest, acc), do: string(rest, [?\f | acc])
  defp string("\\n" <> rest, acc), do: string(rest, [?\n | acc])
  defp string("\\r" <> rest, acc), do: string(rest, [?\r | acc])
  defp string("\\t" <> rest, acc), do: string(rest, [?\t | acc])

  defp string("\\u" <> <<hex::binary-size(4), rest::binary>>, acc) do
    case Integer.parse(hex, 16) do
      {code, ""} -> unicode(code, rest, acc)
      _ -> fail("bad \\u escape")
    end
  end

  defp string(<<c, _::binary>>, _) when c < 0x20, do: fail("control character in string")
  defp string(<<c::utf8, rest::binary>>, acc), do: string(rest, [<<c::utf8>> | acc])
  defp string(_, _), do: fail("unterminated string")

  # A UTF-16 surrogate pair arrives as two escapes.
  defp unicode(hi, "\\u" <> <<hex::binary-size(4), rest::binary>>, acc)
       when hi in 0xD800..0xDBFF do
    case Integer.parse(hex, 16) do
      {lo, ""} when lo in 0xDC00..0xDFFF ->
        code = 0x10000 + Bitwise.bsl(hi - 0xD800, 10) + (lo - 0xDC00)
        string(rest, [<<code::utf8>> | acc])

      _ ->
        fail("bad surrogate pair")
    end
  end

  defp unicode(code, _rest, _acc) when code in 0xD800..0xDFFF, do: fail("lone surrogate")
  defp unicode(code, rest, acc), do: string(rest, [<<code::utf8>> | acc])

  @number ~r/\A-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/
  defp number(text) do
    [literal | parts] = Regex.run(@number, text) || fail("bad number")
    rest = binary_part(text, byte_size(literal), byte_size(text) - byte_size(literal))

    if parts == [] do
      {String.to_integer(literal), rest}
    else
      # "1e5" has no fraction; Float.parse accepts it as written.
      {float, ""} = Float.parse(literal)
      {float, rest}
    end
  end

  defp expect(text, token) do
    size = byte_size(token)

    case text do
      <<^token::binary-size(size), rest::binary>> -> rest
      _ -> fail("expected " <> token)
    end
  end

  defp skip_ws(<<c, rest::binary>>) when c in ~c( \t\r\n), do: skip_ws(rest)
  defp skip_ws(text), do: text

  defp fail(message), do: throw({:json_error, message})
end
